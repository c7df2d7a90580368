"""What a scorer sees (a :class:`Sample`: one run of one case) and what it says (a
:class:`Score`); any callable ``(Sample) -> Score | float | bool``, sync or async, scores."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel._core.events import Event
from keel._runtime.result import RunResult
from keel.evals._case import Case
from keel.testing._calls import ToolCallRecord

if TYPE_CHECKING:
    from keel._runtime.runtime import Runtime

__all__ = [
    "Sample",
    "Score",
    "Scorer",
    "as_score",
    "output_data",
    "output_text",
    "score_with",
    "scorer_name",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One run of one case, as scorers see it: the ``case``, the run's ``result``, its
    ``output`` (``None`` unless it completed), the ``tool_calls`` its model asked for (from
    the journal, in order), the ``deps`` the run was given (to check the final state of the
    tools' data), which ``repeat`` this is (0-based), the run's journal (``events``), and the
    ``runtime`` it ran on (a judge runs there)."""

    case: Case
    result: RunResult[Any]
    output: Any
    tool_calls: Sequence[ToolCallRecord]
    deps: Any = None
    repeat: int = 0
    events: Sequence[Event] = field(default=(), repr=False)
    runtime: Runtime | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Score:
    """A scorer's verdict on a sample: ``value`` from 0 to 1, whether it ``passed``, and a
    ``detail`` saying why."""

    name: str
    value: float
    passed: bool
    detail: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise TypeError(f"score {self.name!r}: value must be a number, got {self.value!r}")
        if math.isnan(self.value) or not 0.0 <= self.value <= 1.0:
            raise ValueError(f"score {self.name!r}: value must be from 0 to 1, got {self.value}")
        object.__setattr__(self, "value", float(self.value))


ScoreLike = Score | float | bool
Scorer = Callable[[Sample], ScoreLike | Awaitable[ScoreLike]]
"""A scorer: called with each sample; a ``bool`` is 1 or 0, a number passes at the scorer's
``threshold`` attribute (default 1.0), a :class:`Score` says it all."""


def scorer_name(scorer: Any) -> str:
    """A scorer's name: its ``name`` attribute, its function name, or its class's name."""
    name = getattr(scorer, "name", None)
    if isinstance(name, str) and name:
        return name
    name = getattr(scorer, "__name__", None)
    if isinstance(name, str) and name and name != "<lambda>":
        return name
    return type(scorer).__name__.lower()


async def score_with(scorer: Scorer, sample: Sample) -> Score:
    """Run ``scorer`` on ``sample``; a scorer that raises scores 0 with the error as detail
    (one broken scorer does not stop an eval)."""
    name = scorer_name(scorer)
    try:
        value = scorer(sample)
        if inspect.isawaitable(value):
            value = await value
        return as_score(value, name, getattr(scorer, "threshold", 1.0))
    except Exception as exc:  # noqa: BLE001 - one broken scorer does not stop an eval
        return Score(name, 0.0, False, f"scorer raised {type(exc).__name__}: {exc}")


def as_score(value: Any, name: str, threshold: float = 1.0) -> Score:
    """A scorer's answer as a :class:`Score` named ``name``."""
    if isinstance(value, Score):
        return value
    if isinstance(value, bool):
        return Score(name, 1.0 if value else 0.0, value)
    if isinstance(value, int | float):
        clipped = min(1.0, max(0.0, float(value)))
        return Score(name, clipped, clipped >= threshold)
    raise TypeError(
        f"scorer {name!r} returned {type(value).__name__}; return a Score, a number from 0 "
        "to 1 or a bool"
    )


def output_text(value: Any) -> str:
    """An output as text: itself if a string, else its JSON."""
    if isinstance(value, str):
        return value
    if hasattr(value, "model_dump_json"):
        text: str = value.model_dump_json()
        return text
    return json.dumps(value, default=str, ensure_ascii=False)


def output_data(value: Any) -> Any:
    """An output as JSON data: a pydantic model dumped, a string parsed if it is JSON."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value

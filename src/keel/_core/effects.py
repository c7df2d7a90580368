"""What the loop asks the runtime to do: effects, and a decision (events, then an effect).

Effects are data; the runtime keeps one handler per kind (:mod:`keel._core.loop` decides,
:mod:`keel._runtime.driver` performs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keel._core.checks import CheckPoint
from keel._core.eventbase import Event
from keel._core.messages import ToolCall
from keel._core.toolspec import ToolSpec

__all__ = [
    "CallModel",
    "CheckSubject",
    "Decision",
    "Effect",
    "HandOff",
    "RunChecks",
    "RunTool",
    "RunTools",
]


class Effect:
    """Base of the effects the loop asks the runtime to perform."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CallModel(Effect):
    """Effect: ask the model for turn ``step``."""

    step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTool:
    """One validated tool call, ready to run (``attempt`` counts from 1)."""

    call: ToolCall
    spec: ToolSpec
    arguments: dict[str, object]
    idempotency_key: str
    attempt: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTools(Effect):
    """Effect: run these calls (concurrently if more than one), then journal their results."""

    step: int
    calls: tuple[RunTool, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HandOff(Effect):
    """Effect: hand the run to the agent ``agent`` (the model called its handoff tool
    ``call``): learn that agent's instructions and tools, journal the call's result and the
    handoff."""

    step: int
    call: ToolCall
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckSubject:
    """What a point's checks look at: its id, and the text, call or arguments in question."""

    subject: str
    text: str | None = None
    call: ToolCall | None = None
    arguments: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunChecks(Effect):
    """Effect: run the checks of ``point`` on each subject, then journal their answers
    (one ``ChecksDecided`` per subject)."""

    step: int
    point: CheckPoint
    subjects: tuple[CheckSubject, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """Events to journal now, then the effect to perform (``None``: ask again, or stop)."""

    events: tuple[Event, ...] = ()
    effect: Effect | None = None

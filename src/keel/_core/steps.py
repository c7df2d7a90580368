"""A journal seen as steps, copied for a fork, and compared with another: pure functions.

- :func:`steps_of` groups a journal into steps: the model's turn, the tool calls it asked for,
  and every other event of that turn (checks, decisions, pauses for people). Each event kind
  places itself (``Event.place``); a kind that says nothing lands in its step's ``events``, or
  in the run's when it has no step.
- :func:`fork_events` copies a journal up to step N, optionally with edited tool results; each
  kind says whether and how it is copied (``Event.fork``).
- :func:`diff_runs` compares two journals step by step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel._core.eventbase import Event, ForkCopy
from keel._core.events_run import RunFinished, RunStarted
from keel._core.messages import ToolCall
from keel.errors import UsageError

if TYPE_CHECKING:
    from keel._core.events_model import ModelFailed, ModelResponded
    from keel._core.events_tools import CallDecided, ToolCallFinished, ToolCallStarted

__all__ = [
    "Difference",
    "RunDiff",
    "Step",
    "StepBuilder",
    "ToolStep",
    "diff_runs",
    "fork_events",
    "steps_of",
]


@dataclass(slots=True)
class ToolStep:
    """One tool call of a step: when it last started (if it ran) and how it ended (if it
    did); ``attempts`` counts its starts."""

    call: ToolCall
    started: ToolCallStarted | None = None
    finished: ToolCallFinished | None = None
    attempts: int = 0


@dataclass(slots=True)
class Step:
    """A model turn and what followed from it.

    The decision record of the turn: :attr:`text` (what the model said, its reasoning), the
    actions it took (``tools``: each call's name, arguments, result or error), and what the
    turn cost (:attr:`latency_ms`, :attr:`input_tokens`, :attr:`output_tokens`,
    :attr:`cost_usd`); :meth:`to_dict` has all of it as JSON-ready data.
    """

    number: int
    response: ModelResponded | None = None
    failure: ModelFailed | None = None
    tools: list[ToolStep] = field(default_factory=list)
    decisions: list[CallDecided] = field(default_factory=list)
    #: Every other event of the step (checks, people asked, output rejected...), in order.
    events: list[Event] = field(default_factory=list)

    @property
    def text(self) -> str | None:
        """What the model said in this turn (its reasoning, or its answer); ``None``: no
        response."""
        return None if self.response is None else self.response.message.content

    @property
    def input_tokens(self) -> int:
        """Prompt tokens of the turn's model call."""
        return 0 if self.response is None else self.response.usage.input_tokens

    @property
    def output_tokens(self) -> int:
        """Completion tokens of the turn's model call."""
        return 0 if self.response is None else self.response.usage.output_tokens

    @property
    def cost_usd(self) -> float | None:
        """What the turn's model call cost (``None``: unknown)."""
        return None if self.response is None else self.response.cost_usd

    @property
    def latency_ms(self) -> float:
        """The model call's latency plus every tool call's, in milliseconds."""
        model = self.response or self.failure
        total = 0.0 if model is None else model.latency_ms
        return total + sum(t.finished.latency_ms for t in self.tools if t.finished is not None)

    @property
    def error(self) -> str | None:
        """The first error of the turn (the model's, else a tool's) as ``code: message``."""
        if self.failure is not None:
            return f"{self.failure.error.code}: {self.failure.error.message}"
        for tool in self.tools:
            if tool.finished is not None and tool.finished.error is not None:
                return f"{tool.finished.error.code}: {tool.finished.error.message}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """The step as JSON-ready data: text, actions with arguments, results and errors,
        latency, tokens and cost."""
        return {
            "step": self.number,
            "text": self.text,
            "actions": [
                {
                    "id": t.call.id,
                    "tool": t.call.name,
                    "arguments": t.call.arguments,
                    "result": None if t.finished is None else t.finished.result,
                    "error": None
                    if t.finished is None or t.finished.error is None
                    else t.finished.error.code,
                    "latency_ms": None if t.finished is None else t.finished.latency_ms,
                }
                for t in self.tools
            ],
            "decisions": [
                {"call": d.call_id, "decision": d.decision, "by": d.by} for d in self.decisions
            ],
            "error": self.error,
            "latency_ms": self.latency_ms,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }


class StepBuilder:
    """What events place themselves into while :func:`steps_of` reads a journal."""

    def __init__(self) -> None:
        self.steps: dict[int, Step] = {}
        self.calls: dict[str, ToolStep] = {}
        self.run_events: list[Event] = []

    def step(self, number: int) -> Step:
        """The step ``number``, created on first use."""
        found = self.steps.get(number)
        if found is None:
            found = self.steps[number] = Step(number=number)
        return found

    def call(self, call_id: str) -> ToolStep | None:
        """The tool call with that id, if a model turn asked for it."""
        return self.calls.get(call_id)

    def step_of_call(self, call_id: str) -> Step | None:
        """The latest step that asked for the call."""
        for step in reversed(self.steps.values()):
            if any(t.call.id == call_id for t in step.tools):
                return step
        return None

    def place(self, event: Event) -> None:
        """Where an event that says nothing about itself goes: its step, else the run."""
        number = event.step_number
        if number is None or number == 0:
            self.run_events.append(event)
        else:
            self.step(number).events.append(event)


def steps_of(events: Sequence[Event]) -> list[Step]:
    """Group a journal into steps, in order."""
    builder = StepBuilder()
    for event in events:
        event.place(builder)
    return [builder.steps[number] for number in sorted(builder.steps)]


def fork_events(
    events: Sequence[Event],
    *,
    at_step: int,
    tool_results: Mapping[str, str] | None = None,
) -> list[Event]:
    """The events of steps ``1..at_step`` (model turns, tool calls, checks, decisions), with
    ``tool_results`` ({call id: result}) replacing what those calls returned."""
    last = max(
        (n for e in events if e.type == "model_responded" and (n := e.step_number)), default=0
    )
    if not 0 <= at_step <= last:
        raise UsageError(
            f"at_step must be between 0 and {last} (the run's last step), got {at_step}"
        )
    copy = ForkCopy(at_step=at_step, calls=set(), edits=dict(tool_results or {}))
    copied = [kept for event in events[1:] if (kept := event.fork(copy)) is not None]
    if copy.edits:
        raise UsageError(
            f"tool_results names calls that have no result in steps 1-{at_step}: "
            f"{', '.join(sorted(copy.edits))}; see the run's steps for call ids"
        )
    return copied


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing that differs between two runs; ``step`` 0 is the start, ``None`` the end."""

    step: int | None
    what: str
    a: str
    b: str


@dataclass(frozen=True, slots=True)
class RunDiff:
    """How two runs differ, step by step."""

    run_a: str
    run_b: str
    differences: list[Difference]

    @property
    def first_divergent_step(self) -> int | None:
        """The first step (0: the start) at which the runs differ; ``None`` if only their
        outcome or nothing differs."""
        steps = [d.step for d in self.differences if d.step is not None]
        return min(steps) if steps else None


def _calls(step: Step) -> str:
    return "; ".join(f"{t.call.name}({t.call.arguments})" for t in step.tools)


def _results(step: Step) -> str:
    return "; ".join(
        f"{t.call.name} -> {t.finished.result if t.finished else '(no result)'}" for t in step.tools
    )


def _end(events: Sequence[Event]) -> tuple[str, Any]:
    for event in reversed(events):
        if isinstance(event, RunFinished):
            return event.status, event.output
    return "unfinished", None


def diff_runs(a: Sequence[Event], b: Sequence[Event]) -> RunDiff:
    """Compare two journals: the start, each step's answer, calls and results, the outcome."""
    first_a, first_b = (a[0] if a else None), (b[0] if b else None)
    if not isinstance(first_a, RunStarted) or not isinstance(first_b, RunStarted):
        raise UsageError("a journal must begin with RunStarted")
    found: list[Difference] = []

    def differ(step: int | None, what: str, left: Any, right: Any) -> None:
        if left != right:
            found.append(Difference(step=step, what=what, a=str(left), b=str(right)))

    for what in ("agent", "model", "input", "instructions"):
        differ(0, what, getattr(first_a, what), getattr(first_b, what))
    steps_a = {s.number: s for s in steps_of(a)}
    steps_b = {s.number: s for s in steps_of(b)}
    for number in sorted(set(steps_a) | set(steps_b)):
        left, right = steps_a.get(number), steps_b.get(number)
        if left is None or right is None:
            differ(
                number, "step", "present" if left else "absent", "present" if right else "absent"
            )
            continue
        text_a = left.response.message.content if left.response else None
        text_b = right.response.message.content if right.response else None
        differ(number, "model text", text_a, text_b)
        differ(number, "tool calls", _calls(left), _calls(right))
        differ(number, "tool results", _results(left), _results(right))
    (status_a, output_a), (status_b, output_b) = _end(a), _end(b)
    differ(None, "status", status_a, status_b)
    differ(None, "output", output_a, output_b)
    return RunDiff(run_a=first_a.run_id, run_b=first_b.run_id, differences=found)

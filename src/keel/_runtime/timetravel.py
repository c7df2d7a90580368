"""Time travel over journals: a run's steps, replay without calling anything, forks, diffs.

- :func:`steps_of` groups a journal into steps: the model's turn and the tool calls it asked for.
- :func:`replay` drives the loop again over a journal: models answer with their journaled
  answers, tools with their journaled results, and people's decisions and resumes are applied
  where they happened. Nothing is called and nothing is written to the run's store. Replaying
  with the current code of an agent is a regression test: any difference (a call the new
  validation refuses, an answer the new output type rejects) shows up as a differing event.
- :func:`fork_events` copies a journal up to step N, optionally with another input or edited
  tool results; the runtime continues the fork from there (:meth:`keel.Runtime.fork`).
- :func:`diff_runs` compares two journals step by step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from keel._agent import Agent
from keel._core.events import (
    ApprovalRequested,
    CallDecided,
    Event,
    ModelFailed,
    ModelResponded,
    ModelSwitched,
    OutputRejected,
    RunFinished,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from keel._core.messages import Message, ModelRequest, ModelResponse, ToolCall
from keel._core.pricing import PriceTable
from keel._core.state import RunState, start
from keel._runtime.runner import RunDriver
from keel._runtime.tool_calls import ToolOutcome
from keel._tools import RunContext, Tool
from keel.errors import ModelError, UsageError
from keel.ports import Model

__all__ = [
    "Difference",
    "Replay",
    "RunDiff",
    "Step",
    "ToolStep",
    "diff_runs",
    "fork_events",
    "replay",
    "steps_of",
]


@dataclass(slots=True)
class ToolStep:
    """One tool call of a step: when it started (if it ran) and how it ended (if it did)."""

    call: ToolCall
    started: ToolCallStarted | None = None
    finished: ToolCallFinished | None = None


@dataclass(slots=True)
class Step:
    """A model turn and what followed from it."""

    number: int
    response: ModelResponded | None = None
    failure: ModelFailed | None = None
    tools: list[ToolStep] = field(default_factory=list)
    decisions: list[CallDecided] = field(default_factory=list)


def steps_of(events: Sequence[Event]) -> list[Step]:
    """Group a journal into steps, in order."""
    steps: dict[int, Step] = {}
    calls: dict[str, ToolStep] = {}
    for event in events:
        if isinstance(event, ModelResponded | ModelFailed):
            step = steps.setdefault(event.step, Step(number=event.step))
            if isinstance(event, ModelResponded):
                step.response = event
                for call in event.message.tool_calls:
                    calls[call.id] = ToolStep(call=call)
                    step.tools.append(calls[call.id])
            else:
                step.failure = event
        elif isinstance(event, ToolCallStarted | ToolCallFinished):
            tool_step = calls.get(event.call.id)
            if tool_step is None:
                continue
            if isinstance(event, ToolCallStarted):
                tool_step.started = event
            else:
                tool_step.finished = event
        elif isinstance(event, CallDecided):
            for step in reversed(steps.values()):
                if any(t.call.id == event.call_id for t in step.tools):
                    step.decisions.append(event)
                    break
    return [steps[number] for number in sorted(steps)]


# -- replay -----------------------------------------------------------------------------------


class _StillClock:
    """Replay's clock: the original's start time, so wall-time limits never trip in a replay."""

    def __init__(self, at: float) -> None:
        self._at = at

    def now(self) -> float:
        return self._at

    def monotonic(self) -> float:
        return 0.0


class _ReplayModel(Model):
    """Answers with a journal's model answers, in order; raises its failures."""

    def __init__(self, name: str, events: Sequence[Event]) -> None:
        self._name = name
        self._answers = [e for e in events if isinstance(e, ModelResponded | ModelFailed)]
        self._next = 0

    @property
    def name(self) -> str:
        return self._name

    async def request(self, request: ModelRequest) -> ModelResponse:
        if self._next >= len(self._answers):
            raise ModelError(
                "replay: the original run made no more model calls here", model=self._name
            )
        answer = self._answers[self._next]
        self._next += 1
        if isinstance(answer, ModelFailed):
            error = ModelError(answer.error.message, model=answer.model, retryable=answer.retryable)
            error.code = answer.error.code
            raise error
        return ModelResponse(
            message=answer.message,
            usage=answer.usage,
            model=answer.model,
            finish_reason=answer.finish_reason,
        )


class _ReplayTools:
    """Answers tool calls with a journal's results."""

    def __init__(self, events: Sequence[Event]) -> None:
        self._results = {e.call.id: e for e in events if isinstance(e, ToolCallFinished)}

    async def __call__(
        self, tool: Tool, context: RunContext[Any], arguments: dict[str, Any], *, timeout_s: float
    ) -> ToolOutcome:
        found = self._results.get(context.tool_call_id)
        if found is None:
            return ToolOutcome(result="Error: replay: the original run made no such call")
        return ToolOutcome(result=found.result, error=found.error)


@dataclass(frozen=True, slots=True)
class Replay:
    """What a replay produced, and whether its journal matches the original's."""

    state: RunState
    events: list[Event]
    identical: bool
    differences: list[str]


def _comparable(event: Event) -> Any:
    """An event without the parts that differ on every execution (times, latencies)."""
    data = {k: v for k, v in _fields(event).items() if k not in ("at", "latency_ms")}
    return json.loads(json.dumps(data, default=str, sort_keys=True))


def _fields(event: Event) -> dict[str, Any]:
    from keel._core.codec import event_to_dict

    return event_to_dict(event)


async def replay(
    agent: Agent[Any], events: Sequence[Event], history: Sequence[Message], prices: PriceTable
) -> Replay:
    """Drive ``agent``'s loop over a journal without calling any model or tool."""
    from keel.stores._memory import MemoryStore

    first = events[0]
    if not isinstance(first, RunStarted):
        raise UsageError("a journal must begin with RunStarted")
    external = [e for e in events if isinstance(e, CallDecided | RunResumed)]
    switches = max((e.model_index for e in events if isinstance(e, ModelSwitched)), default=0)
    store = MemoryStore()
    state = start(first, history)
    driver = RunDriver(
        agent=agent,
        # As many models as the original went through, so fallbacks replay as they happened:
        # the journaled answers come back in order whichever "model" is asked.
        models=[_ReplayModel(first.model, events)] * (1 + switches),
        prices=prices,
        store=store,
        clock=_StillClock(first.at),
        deps=agent.deps,
        state=state,
        last_seq=0,
        unsaved=(first,),
        executor=_ReplayTools(events),
        detached=True,
    )
    while True:
        state = await driver.drive()
        if state.status in ("completed", "failed", "cancelled") or not external:
            break
        # The original stopped here too: apply what people did before it went on.
        while external:
            event = external.pop(0)
            driver.record((event,))
            if isinstance(event, RunResumed):
                break
    produced = await store.load(first.run_id)
    differences = [
        f"event {i + 1}: original {_comparable(a)} / replay {_comparable(b)}"
        for i, (a, b) in enumerate(zip(events, produced, strict=False))
        if _comparable(a) != _comparable(b)
    ]
    if len(events) != len(produced):
        differences.append(f"the original has {len(events)} events, the replay {len(produced)}")
    return Replay(state=state, events=produced, identical=not differences, differences=differences)


# -- fork -------------------------------------------------------------------------------------


def fork_events(
    events: Sequence[Event],
    *,
    at_step: int,
    tool_results: Mapping[str, str] | None = None,
) -> list[Event]:
    """The events of steps ``1..at_step`` (model turns, tool calls, decisions), with
    ``tool_results`` ({call id: result}) replacing what those calls returned."""
    last = max((e.step for e in events if isinstance(e, ModelResponded)), default=0)
    if not 0 <= at_step <= last:
        raise UsageError(
            f"at_step must be between 0 and {last} (the run's last step), got {at_step}"
        )
    edits = dict(tool_results or {})
    copied: list[Event] = []
    calls: set[str] = set()
    for event in events[1:]:
        if isinstance(event, ModelResponded | OutputRejected | ApprovalRequested):
            if event.step > at_step:
                continue
            if isinstance(event, ModelResponded):
                calls.update(c.id for c in event.message.tool_calls)
            copied.append(event)
        elif isinstance(event, ToolCallStarted | ToolCallFinished):
            if event.step > at_step:
                continue
            if isinstance(event, ToolCallFinished) and event.call.id in edits:
                copied.append(replace(event, result=edits.pop(event.call.id), error=None))
            else:
                copied.append(event)
        elif isinstance(event, CallDecided) and event.call_id in calls:
            copied.append(event)
        # Everything else (pauses, resumes, failures, the end) is the original's own history.
    if edits:
        raise UsageError(
            f"tool_results names calls that have no result in steps 1-{at_step}: "
            f"{', '.join(sorted(edits))}; see the run's steps for call ids"
        )
    return copied


# -- diff -------------------------------------------------------------------------------------


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


def diff_runs(a: Sequence[Event], b: Sequence[Event]) -> RunDiff:
    """Compare two journals: the start, each step's answer, calls and results, the outcome."""
    first_a, first_b = a[0], b[0]
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
    end_a = next((e for e in reversed(a) if isinstance(e, RunFinished)), None)
    end_b = next((e for e in reversed(b) if isinstance(e, RunFinished)), None)
    differ(
        None,
        "status",
        end_a.status if end_a else "unfinished",
        end_b.status if end_b else "unfinished",
    )
    differ(None, "output", end_a.output if end_a else None, end_b.output if end_b else None)
    return RunDiff(run_a=first_a.run_id, run_b=first_b.run_id, differences=found)

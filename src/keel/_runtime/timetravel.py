"""Time travel: a run's steps, replay without calling anything, forks and diffs.

:func:`replay` drives the loop again over a journal, through the same :class:`RunDriver` as a
live run, with effect handlers that answer from the journal: the model with its journaled
answers (retries, fallbacks, cache hits and routes included), tools with their journaled
results, checks with their journaled answers; people's decisions, queueing and resumes are
applied where they happened. Nothing is called, nothing is written to the run's store, and no
lease is taken. Replaying with the current code of an agent is a regression test: any
difference (a call the new validation refuses, an answer the new output type rejects) shows up
as a differing event.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from keel._agent import Agent, ModelSpec
from keel._core.codec import event_to_dict
from keel._core.events import (
    FINISHED,
    ChecksDecided,
    ErrorInfo,
    Event,
    ModelFailed,
    ModelResponded,
    ModelSwitched,
    RunPaused,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallWaiting,
)
from keel._core.fold import HistoryRef, apply, history_ref, start
from keel._core.loop import CallModel, Effect, HandOff, RunChecks, RunTools
from keel._core.messages import Message, ModelRequest, ModelResponse
from keel._core.pricing import PriceTable
from keel._core.state import RunState
from keel._core.steps import RunDiff, Step, diff_runs, fork_events, steps_of
from keel._runtime.call_guards import GUARDED, CallPlan
from keel._runtime.check_runs import CheckRuns
from keel._runtime.driver import EffectHandler, RunDriver
from keel._runtime.handoffs import JournaledHandOffs
from keel._runtime.inputs import Principal, check_input
from keel._runtime.kernel import Kernel
from keel._runtime.model_calls import ModelCalls
from keel._runtime.records import record_of
from keel._runtime.result import RunResult
from keel._runtime.running import UNSET, Runs
from keel._runtime.starting import context_of
from keel._runtime.tool_calls import ToolOutcome
from keel._runtime.tool_runs import ToolRuns
from keel._runtime.toolsets import open_agent
from keel._runtime.tracecontext import caller_trace_context
from keel._tools import RunContext, Tool
from keel.errors import ModelError, ModelHTTPError, UsageError
from keel.ports import Model

if TYPE_CHECKING:
    from keel._core.limits import Limits

__all__ = ["Replay", "TimeTravel", "replay"]

#: The reasons a tool run itself records a call as in doubt (a cancel records others).
_TOOL_DOUBTS = ("tool_timeout", "tool_interrupted")


class _ReplayJournal:
    """Where a replay's events go: a list in memory, never the run's store."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int,
        record: Any,
        thread_messages: Sequence[Message] = (),
        lease: Any = None,
        release: bool = False,
    ) -> int:
        self.events.extend(events)
        return len(self.events)


class _StillClock:
    """Replay's clock: the original's start time, so wall-time limits never trip in a replay."""

    def __init__(self, at: float) -> None:
        self._at = at

    def now(self) -> float:
        return self._at

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


class _ReplayModel(Model):
    """Answers with a journal's model answers, in order, as the original got them."""

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
            error: ModelError
            if answer.status is not None:
                error = ModelHTTPError(
                    answer.error.message,
                    status=answer.status,
                    model=answer.model,
                    retryable=answer.retryable,
                )
            else:
                error = ModelError(
                    answer.error.message, model=answer.model, retryable=answer.retryable
                )
            error.code = answer.error.code
            error.attempts = answer.attempts
            raise error
        return ModelResponse(
            message=answer.message,
            usage=answer.usage,
            model=answer.model,
            finish_reason=answer.finish_reason,
            served_by=answer.model,
            attempts=answer.attempts,
            cached=answer.cached,
            route=answer.route,
        )


class _ReplayTools:
    """Answers tool calls with a journal's outcomes, in the order each call had them."""

    def __init__(self, events: Sequence[Event]) -> None:
        self._outcomes: dict[str, list[ToolOutcome]] = {}
        for event in events:
            if isinstance(event, ToolCallFinished):
                outcome = ToolOutcome(
                    result=event.result,
                    error=event.error,
                    attempts=event.attempts,
                    result_chars=event.result_chars,
                    children=event.children,
                )
            elif isinstance(event, ToolCallWaiting):  # it waited for a child run then
                outcome = ToolOutcome(result="", waiting=(event.child, event.reason.message))
            elif isinstance(event, ToolCallInDoubt) and event.reason.code in _TOOL_DOUBTS:
                outcome = ToolOutcome(result="", error=event.reason, timed_out=True)
            else:
                continue
            self._outcomes.setdefault(event.call.id, []).append(outcome)

    async def __call__(
        self,
        tool: Tool,
        context: RunContext[Any],
        arguments: dict[str, Any],
        *,
        timeout_s: float,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> ToolOutcome:
        found = self._outcomes.get(context.tool_call_id)
        if not found:
            return ToolOutcome(result="Error: replay: the original run made no such call")
        return found.pop(0)


class _ReplayChecks(CheckRuns):
    """Answers checks with a journal's answers, by point and subject."""

    def __init__(self, events: Sequence[Event]) -> None:
        self._answers: dict[tuple[str, str], list[ChecksDecided]] = {}
        for event in events:
            if isinstance(event, ChecksDecided):
                self._answers.setdefault((event.point, event.subject), []).append(event)

    async def perform(self, driver: RunDriver, effect: RunChecks) -> None:
        events: list[Event] = []
        for subject in effect.subjects:
            found = self._answers.get((effect.point, subject.subject))
            if found:
                events.append(found.pop(0))
            else:
                events.append(
                    ChecksDecided(
                        step=effect.step,
                        point=effect.point,
                        subject=subject.subject,
                        verdict="allow",
                    )
                )
        driver.record(events)


class _ReplayGuards:
    """Refuses model calls where the original run's guards did (a budget, a cost cap, a rate
    limit), with the journaled reason, and lets the others through: outcomes in call order."""

    def __init__(self, events: Sequence[Event]) -> None:
        self._outcomes: list[ErrorInfo | None] = []
        failed = False
        for event in events:
            if isinstance(event, ModelResponded | ModelFailed):
                self._outcomes.append(None)
            elif isinstance(event, RunPaused) and not failed and event.reason.code in GUARDED:
                self._outcomes.append(event.reason)
            # A pause right after a failed call is the failure's, not a guard's.
            failed = isinstance(event, ModelFailed)

    async def before(self, plan: CallPlan) -> ErrorInfo | None:
        return self._outcomes.pop(0) if self._outcomes else None

    async def after(
        self,
        plan: CallPlan,
        response: ModelResponse | None,
        cost: float | None,
        error: ModelError | None = None,
    ) -> None:
        return None

    async def finish(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Replay:
    """What a replay produced, and whether its journal matches the original's."""

    state: RunState
    events: list[Event]
    identical: bool
    differences: list[str]


def _comparable(event: Event) -> Any:
    """An event without the parts that differ on every execution (times, latencies)."""
    data = {k: v for k, v in event_to_dict(event).items() if k not in ("at", "latency_ms")}
    return json.loads(json.dumps(data, default=str, sort_keys=True))


async def replay(
    agent: Agent[Any], events: Sequence[Event], history: Sequence[Message], prices: PriceTable
) -> Replay:
    """Drive ``agent``'s loop over a journal without calling any model or tool."""
    first = events[0] if events else None
    if not isinstance(first, RunStarted):
        raise UsageError("a journal must begin with RunStarted")
    external = [e for e in events if type(e).external]
    switches = max((e.model_index for e in events if isinstance(e, ModelSwitched)), default=0)
    journal = _ReplayJournal()
    ref = history_ref(events)
    state = start(first, history, summary=None if ref is None else ref.summary)
    handlers: dict[type[Effect], EffectHandler] = {
        CallModel: ModelCalls(),
        RunTools: ToolRuns(_ReplayTools(events)),
        RunChecks: _ReplayChecks(events),
        HandOff: JournaledHandOffs(events),
    }
    # The run began with the agent its journal names (it may have been handed on since).
    agent = agent.reachable().get(first.agent, agent)
    driver = RunDriver(
        agent=agent,
        # As many models as the original went through, so fallbacks replay as they happened:
        # the journaled answers come back in order whichever "model" is asked.
        models=[_ReplayModel(first.model, events)] * (1 + switches),
        prices=prices,
        store=journal,
        clock=_StillClock(first.at),
        deps=agent.deps,
        state=state,
        last_seq=0,
        unsaved=(first,),
        handlers=handlers,
        checks=agent.checks,
        guards=(_ReplayGuards(events),),
        detached=True,
    )
    state = await driver.drive()
    for event in external:
        if state.status in FINISHED:
            break
        # The original stopped here too: apply what people (or the queue) did, then go on.
        driver.record((event,))
        state = await driver.drive()
    produced = journal.events
    differences = [
        f"event {i + 1}: original {_comparable(a)} / replay {_comparable(b)}"
        for i, (a, b) in enumerate(zip(events, produced, strict=False))
        if _comparable(a) != _comparable(b)
    ]
    if len(events) != len(produced):
        differences.append(f"the original has {len(events)} events, the replay {len(produced)}")
    return Replay(state=state, events=produced, identical=not differences, differences=differences)


class TimeTravel:
    """Steps, replays, forks and diffs of one runtime's runs."""

    def __init__(self, kernel: Kernel, runs: Runs) -> None:
        self.k = kernel
        self.runs = runs

    async def steps(self, run_id: str) -> list[Step]:
        """A run's steps: each model turn with the tool calls it asked for and their results."""
        return steps_of(await self.k.store.load(run_id))

    async def replay(self, run_id: str, agent: Agent[Any] | None = None) -> Replay:
        """Replay a run from its journal; nothing is called or written, no lease is taken."""
        events = await self.k.store.load(run_id)
        chosen = await self._first_agent(run_id, events, agent)
        return await replay(chosen, events, await self.k.history(events), self.k.prices)

    async def _first_agent(
        self, run_id: str, events: Sequence[Event], agent: Agent[Any] | None
    ) -> Agent[Any]:
        """The agent a run began with (it may have been handed on since): ``agent``, or the
        registered one."""
        record = await self.k.store.get_run(run_id)
        if agent is not None:
            self.k.agent_for(record, agent)  # refuses an agent the run has nothing to do with
            return agent
        first = events[0] if events else None
        name = first.agent if isinstance(first, RunStarted) else record.agent
        return self.k.agent_for(replace(record, agent=name), None)

    async def fork(
        self,
        run_id: str,
        agent: Agent[Any] | None,
        *,
        at_step: int,
        input: str | None,
        tool_results: Mapping[str, str] | None,
        limits: Limits | None,
        deps: Any,
        model: ModelSpec | None,
    ) -> RunResult[Any]:
        """A new run from a copy of steps ``1..at_step`` of ``run_id``, continued."""
        k = self.k
        source = await k.store.load(run_id)
        chosen = await self._first_agent(run_id, source, agent)
        first = source[0]
        assert isinstance(first, RunStarted)
        copied = tuple(fork_events(source, at_step=at_step, tool_results=tool_results))
        text = first.input if input is None else check_input(input)
        chain = k.composer.for_agent(chosen, model)
        ref = history_ref(source) or HistoryRef(seq=first.history_seq)
        history = await k.history_of(first.thread_id, ref) if history_ref(source) else []
        fork_id = k.new_id(k.clock.now())
        # A fork is a new run: its agent is asked for its instructions and tools again.
        principal = Principal(tenant=first.tenant, user=first.user, roles=first.roles)
        context = context_of(
            chosen,
            run_id=fork_id,
            thread_id=first.thread_id,
            text=text,
            principal=principal,
            deps=chosen.deps if deps is UNSET else deps,
            now=k.clock.now(),
        )
        opening = await open_agent(chosen, context)
        if opening.error is not None:
            raise UsageError(f"the fork could not start: {opening.error.message}")
        started = replace(
            first,
            run_id=fork_id,
            input=text,
            model=chain.name,
            models=chain.names,
            instructions=opening.instructions,
            tools=opening.tools,
            limits=limits or first.limits,
            forked_from=run_id,
            fork_step=at_step,
            queued=False,
            history_seq=ref.seq,
            history_count=ref.count or len(history),
            history_from=ref.start,
            history_summary=ref.summary,
            trace_context=caller_trace_context(),
            at=k.clock.now(),
        )
        state = start(started, history, summary=ref.summary)
        for event in copied:
            apply(state, event)
        if state.agent != chosen.name and model is None:  # the copied steps handed it on
            handed = chosen.reachable().get(state.agent, chosen)
            chain = k.composer.recorded(fork_id, handed, state.models)
        async with k.drives.exclusive(fork_id):
            lease = await k.store.start_run(
                fork_id,
                [started, *copied],
                record=record_of(state, 1 + len(copied)),
                owner=k.driver_owner(),
                ttl_s=k.lease_ttl_s,
            )
            assert lease is not None
            k.observed(state, [started, *copied])
            return await self.runs.drive(
                chosen,
                state,
                lease,
                last_seq=1 + len(copied),
                chain=chain,
                deps=UNSET if deps is UNSET else deps,
                detached=True,
            )

    async def diff(self, run_a: str, run_b: str) -> RunDiff:
        """How two runs differ: their start, each step, and their outcome."""
        return diff_runs(await self.k.store.load(run_a), await self.k.store.load(run_b))

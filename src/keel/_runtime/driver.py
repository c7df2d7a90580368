"""Drives one run: ask the pure loop what to do, make its events durable, perform the effect.

The rule that makes runs recoverable: **events are appended to the store before any effect
with consequences outside the run**, with one exception that costs no safety. A model's answer
and the ``ToolCallStarted`` records of the calls it asked for reach the store in one append
before any tool runs. The results of tools that are safe to repeat (idempotent, or read-only)
then ride along with the next append instead of taking one of their own: if the process dies
before it, recovery finds calls started without a result and runs them again with the same
idempotency key, which is exactly what such tools allow. The result of a tool that is not safe
to repeat is appended at once, before anything else happens. So a step costs one durable append
when its tools are safe to repeat, two otherwise. Model calls and checks have no effect outside
the run, so they need no append before them either.

Effects are open: the driver keeps one :class:`EffectHandler` per effect class (model calls,
tool runs, checks), and replay swaps in handlers that answer from a journal. The driver keeps
the run's state in memory and advances it with the same ``apply`` the fold uses, so a step
costs the same at step 1,000 as at step 1. After every append it publishes the new events to
the run's in-process followers (the store wakes the others). When the run stops, its last
append also gives the lease up (``release``), so that stopping costs no write of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from keel._agent import Agent
from keel._checks import Check
from keel._core.checks import CHECK_POINTS, CheckPoint
from keel._core.events import Event
from keel._core.fold import apply
from keel._core.loop import Effect, LoopSpec, decide
from keel._core.messages import Message, ModelRequest, ToolDefinition
from keel._core.pricing import Price, PriceTable
from keel._core.state import RunState
from keel._core.usage import Usage
from keel._runtime.call_guards import CallGuard, PromptCounter
from keel._runtime.deadline import WallTime
from keel._runtime.leases import LeaseKeeper
from keel._runtime.observers import Observers
from keel._runtime.records import record_of
from keel._runtime.scrubbing import Scrubber, StreamMask
from keel._runtime.toolsets import run_tools
from keel._tools import Tool
from keel.errors import LeaseLostError
from keel.ports import Clock, Lease, Model, RunRecord
from keel.resilience import Fallback

__all__ = ["Appender", "DeltaOutlet", "DeltaSink", "EffectHandler", "RunDriver"]


class Appender(Protocol):
    """The part of a store a driver writes through (a journal's ``append``): replay gives a
    driver a journal that answers this alone."""

    async def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int,
        record: RunRecord,
        thread_messages: Sequence[Message] = (),
        lease: Lease | None = None,
        release: bool = False,
    ) -> int:
        """Append events durably (with ``release``, giving ``lease`` up); return the last
        sequence number."""
        ...


class EffectHandler(Protocol):
    """Performs one kind of effect for a driver and records its outcome as events."""

    #: Whether the events recorded so far must be durable before this effect runs.
    commit_first: bool

    async def perform(self, driver: RunDriver, effect: Any) -> None:
        """Do the effect; record what came of it with ``driver.record``."""
        ...


DeltaSink = Callable[[str, int, str], None]
"""Receives a model's text as it streams: ``(run_id, step, text)``."""


class DeltaOutlet(Protocol):
    """Where a run's streamed text goes (its followers, in this process and others)."""

    async def sink_for(self, run_id: str) -> DeltaSink | None:
        """Where ``run_id``'s text goes, or ``None`` when nobody follows it."""
        ...

    async def flushed(self) -> None:
        """Return once the text sent to other processes so far has left."""
        ...


class JournalHook(Protocol):
    """Told of events just appended to a run's journal, with the run's state after them (the
    audit log listens here). It may hold what it makes of them until ``flush``: a driver
    flushes when it stops driving, other writers right after their append."""

    async def journaled(self, state: RunState, events: Sequence[Event]) -> None:
        """``events`` were just appended to the journal of the run in ``state``."""
        ...

    async def flush(self) -> None:
        """Write what was held."""
        ...


def checks_by_point(checks: Sequence[Check]) -> dict[CheckPoint, tuple[Check, ...]]:
    """The checks consulted at each point, in order (only points that have some)."""
    found: dict[CheckPoint, tuple[Check, ...]] = {}
    for point in CHECK_POINTS:
        at_point = tuple(c for c in checks if point in c.points)
        if at_point:
            found[point] = at_point
    return found


class RunDriver:
    """Advances one run until it finishes or pauses. One driver per run at a time."""

    def __init__(
        self,
        *,
        agent: Agent[Any],
        models: Sequence[Model],
        prices: PriceTable,
        store: Appender,
        clock: Clock,
        deps: Any,
        state: RunState,
        last_seq: int,
        handlers: Mapping[type[Effect], EffectHandler],
        unsaved: Sequence[Event] = (),
        keeper: LeaseKeeper | None = None,
        checks: Sequence[Check] = (),
        detached: bool = False,
        deltas: DeltaOutlet | None = None,
        published: Callable[[str, int, Sequence[Event]], None] | None = None,
        guards: Sequence[CallGuard] = (),
        journaled: Sequence[JournalHook] = (),
        scrubber: Scrubber | None = None,
        observers: Observers | None = None,
        deps_from_agent: bool = False,
        base_checks: Sequence[Check] = (),
    ) -> None:
        if not models:
            raise ValueError("a run needs at least one model")
        self.agent = agent
        self.models = list(models)
        #: ``deps`` are the agent's own (none were given): a handoff brings the new agent's.
        self.deps_from_agent = deps_from_agent
        #: The checks that are not the agent's (the runtime's): they stay after a handoff.
        self.base_checks = tuple(base_checks)
        # The model for each position in the chain: from there on, a fallback over the rest.
        self._from: dict[int, Model] = {}
        self._prices = prices
        # Served models are priced by name once: a fallback or router may serve any of several.
        self._prices_seen: dict[str, Price | None] = {}
        self.store = store
        self.clock = clock
        self.deps = deps
        self.state = state
        self._seq = last_seq
        # Events already applied to ``state`` but not yet in the store (e.g. RunStarted).
        self._pending: list[Event] = list(unsaved)
        self._keeper = keeper
        self._handlers = handlers
        self.checks = checks_by_point(checks)
        # A detached run (a fork) has its source's thread for history, but its messages are
        # not added to that thread: the thread's conversation stays the source's.
        self._detached = detached
        # Whether every pending event may wait for the next append (see the module docstring).
        self.deferrable = False
        self.tools: Mapping[str, Tool] = {}
        self.tool_definitions: tuple[ToolDefinition, ...] = ()
        self.spec: LoopSpec = agent.loop_spec
        self._set_tools()
        self._deltas = deltas
        self._published = published
        #: The one model request of the run (its messages are the state's own list).
        self.request: ModelRequest | None = None
        self._task: asyncio.Task[Any] | None = None
        self._stopping = False
        #: The run's wall-time deadline while this driver drives it (see model_calls).
        self.wall_time = WallTime()
        #: Whether the run's last append gave the lease up (then nobody else need).
        self.released = False
        #: Asked around every model call (spending, rate limits; see call_guards).
        self.guards = tuple(guards)
        self._journaled = tuple(journaled)
        #: Estimates what each model call sends, for the guards (one count per message).
        self.prompt_tokens = PromptCounter()
        self._scrubber = scrubber if scrubber else None
        self._observers = observers if observers else None

    def _set_tools(self) -> None:
        """The run's tools (those its journal names) and its loop spec, for the agent now."""
        agent = self.agent
        self.tools = run_tools(agent, self.state.tools)
        self.tool_definitions = (
            *(item.spec.definition for item in self.tools.values()),
            *agent.handoff_definitions,
        )
        self.spec = replace(
            agent.loop_spec,
            tools={name: item.spec for name, item in self.tools.items()},
            models=len(self.models),
            checks={point: tuple(c.name for c in found) for point, found in self.checks.items()},
        )

    def switch(self, agent: Agent[Any], models: Sequence[Model]) -> None:
        """Go on with ``agent`` (a handoff, journaled already): its tools (those the state
        names now), checks, models and settings."""
        self.agent = agent
        if models:
            self.models = list(models)
            self._from = {}
        if self.deps_from_agent:
            self.deps = agent.deps
        self.checks = checks_by_point((*self.base_checks, *agent.checks))
        self.request = None
        self._set_tools()

    @property
    def last_seq(self) -> int:
        """How many events of the run are in the store."""
        return self._seq

    @property
    def lease_lost(self) -> bool:
        """Whether another process took the run over."""
        return self._keeper is not None and self._keeper.lost is not None

    def stop(self) -> None:
        """Stop driving at once (the run was cancelled from elsewhere in this process): the
        effect under way is cancelled and :meth:`drive` raises ``LeaseLostError``."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def drive(self) -> RunState:
        """Run until the run is no longer ``running``; every event is durable on return.

        Raises :class:`keel.errors.LeaseLostError` if another process took the run over, or
        the run was stopped.
        """
        self._task = asyncio.current_task()
        state = self.state
        # The wall-time budget is measured by the runtime's clock; only cutting a model call
        # that hangs needs a real timer.
        self.wall_time.start(state.limits.max_wall_time_s - (self.clock.now() - state.active_since))
        try:
            state = await self._drive()
            for guard in self.guards:
                await guard.finish()
            for hook in self._journaled:
                await hook.flush()
            return state
        except asyncio.CancelledError:
            task = self._task
            if not self._stopping or task is None:
                raise
            task.uncancel()
            lease = None if self._keeper is None else self._keeper.lease
            raise LeaseLostError(
                self.state.run_id, token=0 if lease is None else lease.token, current=None
            ) from None
        finally:
            self._task = None
            self.wall_time.stop()

    async def _drive(self) -> RunState:
        state = self.state
        if self._stopping:
            raise asyncio.CancelledError
        while True:
            # ``self.spec``, not a copy taken before the loop: a handoff changes it.
            decision = decide(state, self.spec, self.clock.now())
            self.record(decision.events)
            effect = decision.effect
            if effect is None:
                if state.status != "running" or state.cancelling is not None:
                    await self.commit(release=True)
                    return state
                continue
            if self._keeper is not None and self._keeper.lost is not None:
                raise self._keeper.lost  # another process owns the run now: no more effects
            handler = self._handlers.get(type(effect))
            if handler is None:
                raise TypeError(f"no handler for the effect {type(effect).__name__}")
            if handler.commit_first or not self.deferrable:
                await self.commit()
            await handler.perform(self, effect)

    def record(self, events: Sequence[Event]) -> None:
        """Apply events to the state (with the secrets the runtime knows masked); they reach
        the store before the next effect."""
        if self._scrubber is not None:
            events = self._scrubber.events(events)
        for event in events:
            apply(self.state, event)
            self._pending.append(event)

    async def commit(self, *, release: bool = False) -> None:
        """Make every recorded event durable, then tell the run's followers; with ``release``
        (the driver stops), give the run's lease up in the same append."""
        if not self._pending:
            return
        state = self.state
        thread: Sequence[Message] = ()
        if state.status == "completed" and not self._detached:
            thread = state.own_messages
        events, first = self._pending, self._seq + 1
        lease = None if self._keeper is None else self._keeper.lease
        release = release and lease is not None
        self._seq = await self.store.append(
            state.run_id,
            events,
            expected_seq=self._seq,
            record=record_of(state, self._seq + len(events)),
            thread_messages=thread,
            lease=lease,
            release=release,
        )
        self.released = release
        self._pending = []
        self.deferrable = False
        if self._published is not None:
            self._published(state.run_id, first, events)
        if self._observers is not None:
            self._observers(state, events)
        for hook in self._journaled:
            await hook.journaled(state, events)

    async def delta_sink(self) -> DeltaSink | None:
        """Where the model's text goes as it streams, when someone follows it. Text a
        redactor rewrites is not streamed: a piece cannot be redacted without what follows
        it (followers get the redacted answer with its event)."""
        if self._deltas is None or (self._scrubber is not None and self._scrubber.redacts):
            return None
        return await self._deltas.sink_for(self.state.run_id)

    async def deltas_sent(self) -> None:
        """Return once the streamed text bound for other processes has left, so that it
        leaves before the answer it belongs to is journaled."""
        if self._deltas is not None:
            await self._deltas.flushed()

    def stream_mask(self) -> StreamMask | None:
        """A mask for the known secrets in one streamed answer (``None``: none to mask)."""
        return None if self._scrubber is None else self._scrubber.stream()

    def model_now(self) -> Model:
        """The model the run is on: its chain from the current position (``model_index``)."""
        index = min(self.state.model_index, len(self.models) - 1)
        model = self._from.get(index)
        if model is None:
            rest = self.models[index:]
            model = self._from[index] = rest[0] if len(rest) == 1 else Fallback(*rest)
        return model

    def model_names_now(self) -> tuple[str, ...]:
        """The names of the models that may serve the run's next call (its chain from the
        current position)."""
        index = min(self.state.model_index, len(self.models) - 1)
        return tuple(model.name for model in self.models[index:])

    def cost(self, model: str, usage: Usage) -> float | None:
        """What ``usage`` of ``model`` cost; ``None`` when its price is unknown (not free)."""
        if model not in self._prices_seen:
            self._prices_seen[model] = self._prices.price(model)
        price = self._prices_seen[model]
        return None if price is None else price.cost(usage)

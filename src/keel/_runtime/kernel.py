"""What the parts of a runtime share: the store, the clock, models, agents, and the runs this
process drives.

:class:`Kernel` is one runtime's context, handed to each part (running, approvals, time
travel, retention, the worker). :class:`Drives` makes sure a run has one driver in this
process, whatever the callers do: a second ``resume`` of a run being driven here waits for
the first one's result instead of driving it too. Across processes the store's leases do the
same job; each driver takes its lease under an owner id of its own, so two drivers never share
a lease.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from typing_extensions import TypeVar

from keel._agent import Agent
from keel._checks import Check
from keel._core.events import Event, PendingCall
from keel._core.fold import HistoryRef, apply, fold, history_ref
from keel._core.history import history_start
from keel._core.loop import CallModel, Effect, HandOff, RunChecks, RunTools
from keel._core.messages import Message
from keel._core.pricing import PriceTable
from keel._core.state import RunState
from keel._runtime.call_guards import CallGuard
from keel._runtime.check_runs import CheckRuns
from keel._runtime.composition import ModelComposer
from keel._runtime.driver import EffectHandler, JournalHook, RunDriver
from keel._runtime.followers import Followers
from keel._runtime.handoffs import HandOffs
from keel._runtime.leases import new_owner_id
from keel._runtime.model_calls import ModelCalls
from keel._runtime.observers import Observers
from keel._runtime.records import record_of
from keel._runtime.result import RunResult
from keel._runtime.scrubbing import Scrubber
from keel._runtime.tool_runs import ToolRuns
from keel._settings import KeelSettings
from keel.errors import RunLeasedError, UsageError
from keel.ports import Clock, Lease, RunRecord, Store

__all__ = ["Drives", "Followers", "Kernel", "Loaded", "joined", "pending_message"]

OutputT = TypeVar("OutputT", default=Any)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A run's journal, folded: its state, events, and how many there are."""

    state: RunState
    events: list[Event]

    @property
    def last_seq(self) -> int:
        """How many events the journal holds."""
        return len(self.events)


async def joined(driving: asyncio.Future[Any]) -> Any:
    """The result of the driver of a run in this process; ``None`` when it let go of the run
    without one (it found the run started or taken elsewhere, say): the caller looks again."""
    try:
        return await asyncio.shield(driving)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if driving.cancelled() and (task is None or not task.cancelling()):
            return None
        raise


class Drives:
    """The runs this process is driving now, each with the future of its result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, tuple[asyncio.Future[Any], RunDriver | None]] = {}

    def running(self, run_id: str) -> bool:
        """Whether this process drives ``run_id`` now."""
        with self._lock:
            return run_id in self._active

    def driver(self, run_id: str) -> RunDriver | None:
        """The driver of ``run_id`` in this process, if it has begun driving."""
        with self._lock:
            found = self._active.get(run_id)
        return None if found is None else found[1]

    def outcome(self, run_id: str) -> asyncio.Future[Any] | None:
        """The future of ``run_id``'s driving in this process and on this event loop, if it is
        driven here now."""
        with self._lock:
            found = self._active.get(run_id)
        if found is None:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return found[0] if found[0].get_loop() is loop else None

    def attach(self, run_id: str, driver: RunDriver) -> None:
        """Say which driver advances ``run_id`` (for stopping it from elsewhere)."""
        with self._lock:
            found = self._active.get(run_id)
            if found is not None:
                self._active[run_id] = (found[0], driver)

    @asynccontextmanager
    async def exclusive(self, run_id: str) -> AsyncIterator[asyncio.Future[Any] | None]:
        """Hold ``run_id`` for one driver in this process.

        Yields ``None`` to the one that may drive (it sets the result with :meth:`done`), or,
        when the run is already driven here, that driver's future to wait on.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._active.get(run_id)
            if found is None:
                future: asyncio.Future[Any] = loop.create_future()
                self._active[run_id] = (future, None)
                mine = True
            else:
                future, mine = found[0], False
        if not mine:
            if future.get_loop() is not loop:
                raise RunLeasedError(run_id, owner="another thread of this process", expires_at=0)
            yield future
            return
        try:
            yield None
        finally:
            with self._lock:
                self._active.pop(run_id, None)
            if not future.done():
                future.cancel()

    def done(self, run_id: str, result: Any = None, error: BaseException | None = None) -> None:
        """Hand the outcome of driving ``run_id`` to whoever waits on it."""
        with self._lock:
            found = self._active.get(run_id)
        if found is None or found[0].done():
            return
        if error is not None:
            found[0].set_exception(error)
            found[0].exception()  # marked as retrieved: nobody may be waiting
        else:
            found[0].set_result(result)


class Kernel:
    """One runtime's shared context; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        settings: KeelSettings,
        composer: ModelComposer,
        prices: PriceTable,
        clock: Clock,
        lease_ttl_s: float,
        checks: Sequence[Check],
        new_id: Callable[[float], str],
    ) -> None:
        self.store = store
        self.settings = settings
        self.composer = composer
        self.prices = prices
        self.clock = clock
        self.lease_ttl_s = lease_ttl_s
        self.checks = tuple(checks)
        self.new_id = new_id
        self.owner = new_owner_id()
        self._drivers = itertools.count(1)
        self.agents: dict[str, Agent[Any]] = {}
        self.refs: dict[str, str] = {}
        self.drives = Drives()
        self.followers = Followers()
        #: Runs this process is cancelling now: a driver that lost one waits for the cancel.
        self.cancels: dict[str, asyncio.Future[None]] = {}
        #: Make the guards around one run's model calls (spending, rate limits), in order.
        self.call_guards: list[Callable[[RunState], CallGuard | None]] = []
        #: Told of every append to a run's journal made by this process (the audit log).
        self.journal_hooks: list[JournalHook] = []
        #: Told of every batch of events this process journals (traces, metrics, logs).
        self.observers = Observers()
        #: Masks the secrets this runtime knows in every event before it is applied.
        self.scrubber = Scrubber()
        self._handlers: dict[type[Effect], EffectHandler] = {
            CallModel: ModelCalls(),
            RunTools: ToolRuns(watchers=self.observers, kernel=self),
            RunChecks: CheckRuns(),
            HandOff: HandOffs(composer),
        }

    def driver_owner(self) -> str:
        """A lease owner id for one driver: this runtime's id and a counter."""
        return f"{self.owner}#{next(self._drivers)}"

    @property
    def handlers(self) -> dict[type[Effect], EffectHandler]:
        """The effect handlers of live runs."""
        return self._handlers

    def guards_for(self, state: RunState) -> tuple[CallGuard, ...]:
        """The guards around the model calls of the run in ``state``."""
        found = (make(state) for make in self.call_guards)
        return tuple(guard for guard in found if guard is not None)

    def checks_for(self, agent: Agent[Any]) -> tuple[Check, ...]:
        """The checks a run of ``agent`` consults: the runtime's, then the agent's."""
        return self.checks + agent.checks if self.checks else agent.checks

    def register(self, agent: Agent[Any], *, ref: str | None = None) -> None:
        """Know ``agent`` by its name, and the agents its handoffs lead to."""
        if not isinstance(agent, Agent):
            raise UsageError(f"expected a keel.Agent, got {type(agent).__name__}")
        graph = agent.reachable()
        for member in graph.values():
            known = self.agents.get(member.name)
            if known is not None and known is not member:
                raise UsageError(
                    f"another agent named '{member.name}' is already registered; agent names "
                    "identify runs, so give each agent its own"
                )
        self.agents.update(graph)
        if ref is not None:
            self.refs[agent.name] = ref
        if known is None:  # and the agents it delegates to, whose runs are its children
            from keel._runtime.delegation import delegated_agents  # (it imports this module)

            for child in delegated_agents(agent):
                self.register(child)

    def agent_for(
        self, record: RunRecord, agent: Agent[OutputT] | None, *, needed: bool = True
    ) -> Agent[OutputT]:
        """The agent to continue ``record``'s run with: ``agent`` (which must have its name),
        else the registered one."""
        if agent is not None:
            if not isinstance(agent, Agent):
                raise UsageError(f"expected a keel.Agent, got {type(agent).__name__}")
            # A run handed to another agent is continued with that one, found through the
            # handoffs of the agent given.
            found = agent.reachable().get(record.agent)
            if found is not None:
                return cast(Agent[OutputT], found)
            if agent.name != record.agent:
                raise UsageError(
                    f"run {record.run_id} belongs to agent '{record.agent}', not "
                    f"'{agent.name}'; use the agent that started it"
                )
            return agent
        known = self.agents.get(record.agent)
        if known is None:
            if not needed:
                return cast(Agent[OutputT], Agent(name=record.agent))
            raise UsageError(
                f"run {record.run_id} belongs to agent '{record.agent}', which this runtime does "
                "not know: pass agent=..., or register it with Runtime(agents=[...])"
            )
        return cast(Agent[OutputT], known)

    # -- reading journals --------------------------------------------------------------------

    async def history(self, events: Sequence[Event]) -> list[Message]:
        """The thread messages a run was given, as its journal says."""
        ref = history_ref(events)
        return [] if ref is None else await self.history_of(events[0].thread_id, ref)  # type: ignore[attr-defined]

    async def history_of(self, thread_id: str, ref: HistoryRef) -> list[Message]:
        """The messages ``ref`` names in the thread."""
        found = await self.store.thread_history(thread_id, upto_seq=ref.seq)
        return ref.select(found.messages)

    async def load(self, run_id: str) -> Loaded:
        """A run's journal, folded."""
        events = await self.store.load(run_id)
        return Loaded(state=fold(events, await self.history(events)), events=events)

    async def record(
        self, loaded: Loaded, events: Sequence[Event], lease: Lease, *, applied: bool = False
    ) -> int:
        """Apply ``events`` to a run this process holds the lease of (unless ``applied``) and
        append them under that lease; return the journal's new last sequence number."""
        state = loaded.state
        if not applied:
            events = self.scrubber.events(events)
            for event in events:
                apply(state, event)
        last = await self.store.append(
            state.run_id,
            events,
            expected_seq=loaded.last_seq,
            record=record_of(state, loaded.last_seq + len(events)),
            lease=lease,
        )
        self.observed(state, events)
        for hook in self.journal_hooks:
            await hook.journaled(state, events)
            await hook.flush()
        return last

    def observed(self, state: RunState, events: Sequence[Event]) -> None:
        """Tell the observers of events just journaled (a no-op without observers)."""
        if self.observers:
            self.observers(state, events)

    async def trimmed(
        self, agent: Agent[Any], messages: Sequence[Message]
    ) -> tuple[int, str | None]:
        """Where ``agent``'s history budget cuts a thread's messages, and the summary of what
        it leaves out (when the agent summarizes)."""
        budget = agent.history
        begin = history_start(messages, budget)
        if not begin or budget.summarize is None:
            return begin, None
        summary: Any = budget.summarize(messages[:begin])
        if asyncio.iscoroutine(summary) or isinstance(summary, asyncio.Future):
            summary = await summary
        return begin, str(summary)

    def result(self, agent: Agent[OutputT] | None, state: RunState) -> RunResult[OutputT]:
        """The result of a run in ``state``, its output loaded as ``agent``'s type."""
        output: Any = state.output
        spec = None if agent is None else agent.loop_spec.output
        if spec is not None and state.status == "completed":
            output = spec.load(output)
        return cast(RunResult[OutputT], RunResult.from_state(state, output))

    def known_agents(self) -> Iterable[str]:
        """The names of the registered agents."""
        return list(self.agents)


def pending_message(state: RunState) -> str:
    """What waits for a person in a run, as a sentence."""
    calls = ", ".join(f"{p.call.id} ({p.call.name}, {p.kind})" for p in state.pending.values())
    return (
        f"run {state.run_id} is waiting for a person to decide on: {calls}; approve, reject "
        "or confirm each one first"
    )


def pick_pending(state: RunState, call_id: str | None) -> PendingCall:
    """The pending call named ``call_id`` (or the only one)."""
    if state.status != "awaiting_approval" or not state.pending:
        raise UsageError(
            f"run {state.run_id} has no call waiting for a decision (it is {state.status})"
        )
    if call_id is None:
        if len(state.pending) > 1:
            raise UsageError(f"{pending_message(state)}; name the call with call_id=...")
        return next(iter(state.pending.values()))
    pending = state.pending.get(call_id)
    if pending is None:
        raise UsageError(f"call {call_id} is not waiting for a decision; {pending_message(state)}")
    return pending

"""Running: start a run inline, accept one into the queue, drive a run, continue a claimed
or paused one, wait for one to stop.

``run()`` is ``submit()`` plus driving inline, as fast as a plain start: on an idle thread the
run is created leased to its caller and driven at once. On a busy thread (an earlier run of it
has not ended) it is made durable in the queue and waits there for its turn, woken by the
store, not by polling the caller's loop: whoever gets to it first (its caller, a worker,
``recover()``) drives it. Every driver goes through :meth:`Runs.drive`, under a lease of its
own and the one-driver-per-run rule of :class:`keel._runtime.kernel.Drives`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final, Literal, cast

from typing_extensions import TypeVar

from keel._agent import Agent, ModelSpec
from keel._core.events import (
    FINISHED,
    Event,
    RunDequeued,
    RunFinished,
    RunQueued,
    RunResumed,
    RunStarted,
)
from keel._core.fold import HistoryRef, apply, start
from keel._core.limits import Limits
from keel._core.loop import LoopSpec, decide
from keel._core.state import RunState
from keel._runtime.composition import Chain
from keel._runtime.driver import RunDriver
from keel._runtime.inputs import NOBODY, Principal, check_agent, check_input, check_thread
from keel._runtime.kernel import Kernel, Loaded, joined, pending_message
from keel._runtime.leases import LeaseKeeper
from keel._runtime.records import record_of
from keel._runtime.repeats import rejoin, same_request
from keel._runtime.result import RunResult
from keel._runtime.run_waits import run_result, wait_for_run
from keel._runtime.starting import started_event, thread_agent
from keel._runtime.waits import pause, watching
from keel._runtime.withdrawal import withdraw
from keel.errors import (
    LeaseLostError,
    RunExistsError,
    ThreadBusyError,
    ThreadChangedError,
    UsageError,
)
from keel.ports import Lease, Model, ThreadHistory

__all__ = ["UNSET", "IfBusy", "Runs"]

OutputT = TypeVar("OutputT", default=Any)
IfBusy = Literal["reject", "queue", "interrupt"]
"""What a new run does when an earlier run of its thread has not ended: fail with
``ThreadBusyError``, wait behind it in the queue, or cancel it."""

UNSET: Final[Any] = object()
_TAKEOVER_WAIT_S = 5.0


class Runs:
    """Starting, queueing, driving and waiting for runs; one per runtime."""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel

    # -- starting ---------------------------------------------------------------------------

    async def submit(
        self,
        agent: Agent[Any],
        input: str,
        *,
        thread: str | None = None,
        limits: Limits | None = None,
        model: ModelSpec | None = None,
        principal: Principal = NOBODY,
        if_busy: IfBusy = "queue",
        idempotency_key: str | None = None,
    ) -> str:
        """Make a run durable with status ``queued``; return its id (with an idempotency key
        used before, the id of the run it created). ``if_busy`` says what happens when an
        earlier run of ``thread`` has not ended: wait behind it in the queue, raise
        ``ThreadBusyError`` (nothing is journaled), or cancel it first."""
        check_agent(agent)
        text = check_input(input)
        if if_busy not in ("reject", "queue", "interrupt"):
            raise UsageError(f"if_busy must be 'reject', 'queue' or 'interrupt', got {if_busy!r}")
        self.k.register(agent)
        if thread is not None:
            check_thread(thread)
        agent = await thread_agent(self.k, agent, thread)
        chain = self.k.composer.for_agent(agent, model)
        run_id = self.k.new_id(self.k.clock.now())
        thread_id = run_id if thread is None else check_thread(thread)
        started, failed = await started_event(
            self.k,
            agent,
            chain=chain,
            run_id=run_id,
            thread_id=thread_id,
            text=text,
            limits=limits,
            principal=principal,
            deps=agent.deps,
        )
        started = replace(started, queued=True)
        try:
            if failed is not None:
                await self._enqueue(started, idempotency_key, failed=failed)
                return run_id
            if thread is None or if_busy == "queue":
                await self._enqueue(started, idempotency_key)
                return run_id
            while True:
                try:
                    # Checking the thread and accepting the run are one atomic step of the store.
                    await self._enqueue(started, idempotency_key, exclusive=True)
                except ThreadBusyError as busy:
                    if if_busy == "reject":
                        raise
                    await self.k_cancel(busy.active_run_id, thread_id, run_id)
                    continue
                return run_id
        except RunExistsError as exists:
            return same_request(agent, exists)

    async def _enqueue(
        self,
        started: RunStarted,
        key: str | None = None,
        *,
        exclusive: bool = False,
        failed: RunFinished | None = None,
    ) -> RunState:
        """Make a run durable without driving it: queued, or (``failed``) failed at once."""
        state = start(started)
        events: list[Event] = [started]
        if failed is not None:
            apply(state, failed)
            events.append(failed)
        await self.k.store.start_run(
            started.run_id,
            events,
            record=record_of(state, len(events)),
            owner=None,
            ttl_s=self.k.lease_ttl_s,
            exclusive=exclusive,
            idempotency_key=key,
        )
        self.k.observed(state, events)
        return state

    async def run(
        self,
        agent: Agent[OutputT],
        input: str,
        *,
        thread: str | None,
        deps: Any,
        limits: Limits | None,
        model: ModelSpec | None,
        if_busy: IfBusy,
        queue_timeout_s: float,
        principal: Principal = NOBODY,
        idempotency_key: str | None = None,
    ) -> RunResult[OutputT]:
        """Start a run and drive it inline; see :meth:`keel.Runtime.run`."""
        check_agent(agent)
        text = check_input(input)
        if if_busy not in ("reject", "queue", "interrupt"):
            raise UsageError(f"if_busy must be 'reject', 'queue' or 'interrupt', got {if_busy!r}")
        k = self.k
        if thread is not None:
            check_thread(thread)
        agent = await thread_agent(k, agent, thread)
        chain = k.composer.for_agent(agent, model)
        run_id = k.new_id(k.clock.now())
        thread_id = run_id if thread is None else check_thread(thread)
        exclusive = thread is not None
        template, failed = await started_event(
            k,
            agent,
            chain=chain,
            run_id=run_id,
            thread_id=thread_id,
            text=text,
            limits=limits,
            principal=principal,
            deps=agent.deps if deps is UNSET else deps,
        )
        if failed is not None:  # its instructions or tools could not be had: it fails
            try:
                state = await self._enqueue(template, idempotency_key, failed=failed)
            except RunExistsError as exists:
                return await rejoin(self, agent, exists, deps=deps, queue_timeout_s=queue_timeout_s)
            return k.result(agent, state)
        async with k.drives.exclusive(run_id):
            while True:
                history = (
                    await k.store.thread_history(thread_id)
                    if exclusive
                    else ThreadHistory(messages=[], last_seq=0)
                )
                begin, summary = await k.trimmed(agent, history.messages)
                started = replace(
                    template,
                    history_seq=history.last_seq,
                    history_count=len(history.messages),
                    history_from=begin,
                    history_summary=summary,
                )
                ref = HistoryRef(seq=history.last_seq, start=begin, summary=summary)
                state = start(started, ref.select(history.messages), summary=summary)
                try:
                    lease = await k.store.start_run(
                        run_id,
                        [started],
                        record=record_of(state, 1),
                        owner=k.driver_owner(),
                        ttl_s=k.lease_ttl_s,
                        exclusive=exclusive,
                        idempotency_key=idempotency_key,
                    )
                except RunExistsError as exists:
                    return await rejoin(
                        self, agent, exists, deps=deps, queue_timeout_s=queue_timeout_s
                    )
                except ThreadChangedError:
                    continue  # a run of the thread ended after we read its history: again
                except ThreadBusyError as busy:
                    if if_busy == "reject":
                        raise
                    if if_busy == "interrupt":
                        await self.k_cancel(busy.active_run_id, thread_id, run_id)
                        continue
                    break
                assert lease is not None
                k.observed(state, [started])
                return await self.drive(agent, state, lease, last_seq=1, chain=chain, deps=deps)
            try:
                await self._enqueue(replace(template, queued=True), idempotency_key)
            except RunExistsError as exists:
                return await rejoin(self, agent, exists, deps=deps, queue_timeout_s=queue_timeout_s)
            return await self.wait_turn(agent, run_id, thread_id, deps, queue_timeout_s)

    async def k_cancel(self, run_id: str, thread_id: str, by_run: str) -> None:
        """Cancel the run that holds a thread, for a newer message (``if_busy='interrupt'``)."""
        from keel._runtime.stopping import cancel

        await cancel(
            self.k,
            run_id,
            reason=f"interrupted by a new message on thread {thread_id} (run {by_run})",
        )

    async def wait_turn(
        self,
        agent: Agent[OutputT],
        run_id: str,
        thread_id: str,
        deps: Any,
        queue_timeout_s: float,
    ) -> RunResult[OutputT]:
        """Wait, durably queued, until ``run_id`` is first in its thread; then drive it."""
        k = self.k
        deadline = k.clock.monotonic() + queue_timeout_s
        async with watching(k.store, None) as changes:
            while True:
                leases = await k.store.claim_runs(
                    owner=k.driver_owner(), ttl_s=k.lease_ttl_s, limit=1, run_ids=[run_id]
                )
                if leases:
                    return await self.continue_claimed(agent, leases[0], deps=deps, slot_held=True)
                record = await k.store.get_run(run_id)
                if record.status != "queued" or record.lease_owner is not None:
                    return await self.wait(run_id, agent)  # another driver has it
                holder = await k.store.active_run(thread_id)
                remaining = deadline - k.clock.monotonic()
                waits_for_person = holder is not None and holder.status in (
                    "paused",
                    "awaiting_approval",
                )
                if waits_for_person or remaining <= 0:
                    assert holder is not None or remaining <= 0
                    active = holder.run_id if holder is not None else run_id
                    status = holder.status if holder is not None else "running"
                    if await withdraw(k, run_id):
                        why = (
                            "it waits for a person or for a resume, so this message was not "
                            "queued behind it: decide on it, resume or cancel it first, or send "
                            "with if_busy='interrupt'"
                            if waits_for_person
                            else f"waited {queue_timeout_s:g}s for it (queue_timeout_s); this "
                            "message was not run"
                        )
                        raise ThreadBusyError(
                            thread_id, active_run_id=active, status=status, why=why
                        )
                    return await self.wait(run_id, agent)
                await pause(k, changes, min(remaining, 1.0))

    # -- continuing -----------------------------------------------------------------------

    async def prepare(
        self,
        agent: Agent[Any],
        loaded: Loaded,
        *,
        limits: Limits | None = None,
        model: ModelSpec | None = None,
    ) -> tuple[RunState, tuple[Event, ...], Chain]:
        """What a driver begins a run it now holds with: its state, the events that start
        this stretch (``RunDequeued`` for a queued run's first start, ``RunResumed``
        otherwise), and its models (those recorded at its start, unless ``model`` is given)."""
        k = self.k
        state = loaded.state
        if model is not None:
            chain = k.composer.for_agent(agent, model)
        elif state.models:
            chain = k.composer.recorded(state.run_id, agent, state.models)
        else:  # a journal from before models were recorded
            chain = k.composer.for_agent(agent)
        changed = None if model is None else chain.names
        events: list[Event] = []
        first = loaded.events[0]
        # Only a run accepted into the queue leaves it once: one started inline and queued
        # again later (a person's decision) read its history when it started.
        accepted = isinstance(first, RunStarted) and first.queued
        if (
            accepted
            and state.status == "queued"
            and not any(isinstance(e, RunDequeued) for e in loaded.events)
        ):
            history = await k.store.thread_history(state.thread_id)
            begin, summary = await k.trimmed(agent, history.messages)
            dequeued = RunDequeued(
                history_seq=history.last_seq,
                history_count=len(history.messages),
                history_from=begin,
                history_summary=summary,
                at=k.clock.now(),
            )
            ref = HistoryRef(seq=history.last_seq, start=begin, summary=summary)
            assert isinstance(first, RunStarted)
            state = start(first, ref.select(history.messages), summary=summary)
            for event in loaded.events[1:]:
                apply(state, event)
            events.append(dequeued)
            if limits is not None or changed is not None:
                events.append(
                    RunResumed(limits=limits or state.limits, models=changed, at=k.clock.now())
                )
        else:
            events.append(
                RunResumed(
                    limits=limits or state.limits,
                    models=changed,
                    taken_over=state.status == "running",
                    at=k.clock.now(),
                )
            )
        return state, tuple(events), chain

    async def continue_claimed(
        self,
        agent: Agent[OutputT],
        lease: Lease,
        *,
        deps: Any = UNSET,
        slot_held: bool = False,
    ) -> RunResult[OutputT]:
        """Drive a run this process just claimed from the queue (or found interrupted)."""
        if slot_held:
            return await self._continue(agent, lease, deps)
        async with self.k.drives.exclusive(lease.run_id) as other:
            if other is not None:
                await self.k.store.release_lease(lease)
                result: RunResult[OutputT] | None = await joined(other)
                return result if result is not None else await self.result(lease.run_id, agent)
            return await self._continue(agent, lease, deps)

    async def _continue(self, agent: Agent[OutputT], lease: Lease, deps: Any) -> RunResult[OutputT]:
        k = self.k
        try:
            loaded = await k.load(lease.run_id)
            if loaded.state.status not in ("queued", "running"):
                await k.store.release_lease(lease)
                return k.result(agent, loaded.state)
            state, events, chain = await self.prepare(agent, loaded)
        except BaseException:
            await k.store.release_lease(lease)
            raise
        return await self.drive(
            agent, state, lease, last_seq=loaded.last_seq, chain=chain, deps=deps, new_events=events
        )

    async def drive(
        self,
        agent: Agent[OutputT],
        state: RunState,
        lease: Lease,
        *,
        last_seq: int,
        chain: Chain,
        deps: Any = UNSET,
        new_events: Sequence[Event] = (),
        detached: bool = False,
    ) -> RunResult[OutputT]:
        """Drive a run this process holds the lease of, then give the lease up. The caller
        holds the run's slot in :class:`keel._runtime.kernel.Drives`."""
        k = self.k
        run_id = state.run_id
        if state.agent != agent.name:  # handed to another agent: it goes on with that one
            agent = cast(Agent[OutputT], agent.reachable().get(state.agent, agent))
        keeper = LeaseKeeper(k.store, lease, ttl_s=k.lease_ttl_s)
        try:
            async with keeper:
                driver = RunDriver(
                    agent=agent,
                    models=chain.models,
                    prices=k.prices,
                    store=k.store,
                    clock=k.clock,
                    deps=agent.deps if deps is UNSET else deps,
                    state=state,
                    last_seq=last_seq,
                    handlers=k.handlers,
                    keeper=keeper,
                    checks=k.checks_for(agent),
                    detached=detached or state.forked_from is not None,
                    deltas=k.followers,
                    guards=k.guards_for(state),
                    journaled=k.journal_hooks,
                    scrubber=k.scrubber,
                    observers=k.observers,
                    deps_from_agent=deps is UNSET,
                    base_checks=k.checks,
                )
                k.drives.attach(run_id, driver)
                driver.record(new_events)
                try:
                    state = await driver.drive()
                except LeaseLostError:
                    result = await self._after_takeover(agent, run_id)
                else:
                    result = k.result(agent, state)
                finally:
                    if not driver.released:  # its last append gave the lease up
                        await keeper.release()
        except BaseException as exc:
            k.drives.done(run_id, error=exc if isinstance(exc, Exception) else None)
            raise
        k.drives.done(run_id, result)
        return result

    async def _after_takeover(self, agent: Agent[OutputT], run_id: str) -> RunResult[OutputT]:
        """Another driver took the run over (a cancel, an interruption): report where it
        stands once it stopped; if it goes on elsewhere, it is theirs now."""
        k = self.k
        cancel = k.cancels.get(run_id)
        if cancel is not None:
            await asyncio.shield(cancel)
        deadline = k.clock.monotonic() + _TAKEOVER_WAIT_S
        async with watching(k.store, run_id) as changes:
            while True:
                current = (await k.load(run_id)).state
                if current.status in FINISHED or current.cancelling is not None:
                    return k.result(agent, current)
                remaining = deadline - k.clock.monotonic()
                if remaining <= 0 or current.status not in ("running", "queued"):
                    break
                await pause(k, changes, min(remaining, 0.5))
        raise LeaseLostError(run_id, token=0, current=None)

    async def resume(
        self,
        run_id: str,
        agent: Agent[OutputT] | None,
        *,
        limits: Limits | None,
        deps: Any,
        model: ModelSpec | None,
    ) -> RunResult[OutputT]:
        """Continue a run here; see :meth:`keel.Runtime.resume`."""
        k = self.k
        record = await k.store.get_run(run_id)
        chosen = k.agent_for(record, agent)
        async with k.drives.exclusive(run_id) as other:
            if other is not None:  # this process drives it already: one driver per run
                result: RunResult[OutputT] | None = await joined(other)
                if result is None:  # that driver let go of it: look again
                    return await self.resume(run_id, agent, limits=limits, deps=deps, model=model)
                return result
            lease = await k.store.acquire_lease(run_id, owner=k.driver_owner(), ttl_s=k.lease_ttl_s)
            try:
                loaded = await k.load(run_id)
                state = loaded.state
                if state.status in FINISHED:
                    await k.store.release_lease(lease)
                    return k.result(chosen, state)
                if state.pending:
                    raise UsageError(pending_message(state))
                if state.cancelling is not None:
                    ending = decide(state, LoopSpec(), k.clock.now()).events
                    await k.record(loaded, ending, lease)
                    await k.store.release_lease(lease)
                    return k.result(chosen, state)
                state, events, chain = await self.prepare(
                    chosen, loaded, limits=limits, model=model
                )
            except BaseException:
                await k.store.release_lease(lease)
                raise
            return await self.drive(
                chosen,
                state,
                lease,
                last_seq=loaded.last_seq,
                chain=chain,
                deps=deps,
                new_events=events,
            )

    async def requeue(
        self, run_id: str, *, limits: Limits | None, model: ModelSpec | None, reason: str
    ) -> RunResult[Any]:
        """Put a paused or interrupted run back in the queue (with new limits or models) for
        any driver; see :meth:`keel.Runtime.requeue`."""
        k = self.k
        names: tuple[str, ...] | None = None
        if model is not None:
            items = [model] if isinstance(model, str | Model) else list(model)
            if not all(isinstance(item, str) for item in items):
                raise UsageError(
                    "a queued run continues in any process, so its models must be given by "
                    "name (e.g. 'openai:gpt-4o-mini'), not as objects"
                )
            names = tuple(str(item) for item in items)
        async with k.drives.exclusive(run_id) as other:
            if other is not None:
                raise UsageError(f"run {run_id} is being driven by this process right now")
            lease = await k.store.acquire_lease(run_id, owner=k.driver_owner(), ttl_s=k.lease_ttl_s)
            try:
                loaded = await k.load(run_id)
                state = loaded.state
                if state.status in FINISHED:
                    return k.result(k.agents.get(state.agent), state)
                if state.pending:
                    raise UsageError(pending_message(state))
                queued = RunQueued(reason=reason, limits=limits, models=names, at=k.clock.now())
                await k.record(loaded, [queued], lease)
                return k.result(k.agents.get(state.agent), state)
            finally:
                await k.store.release_lease(lease)

    # -- waiting --------------------------------------------------------------------------

    async def wait(
        self, run_id: str, agent: Agent[OutputT] | None = None, *, timeout_s: float | None = None
    ) -> RunResult[OutputT]:
        """Wait until the run is no longer queued or running (or ``timeout_s`` passed), and
        return where it stands."""
        return await wait_for_run(self.k, run_id, agent, timeout_s=timeout_s)

    async def result(self, run_id: str, agent: Agent[OutputT] | None = None) -> RunResult[OutputT]:
        """Where a run stands now, from its journal."""
        return await run_result(self.k, run_id, agent)

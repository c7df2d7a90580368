"""Cancelling a run, and recovering the runs whose process died.

**Cancel** takes the run's lease by force (fencing out whoever drove it) and stops a driver
of this process at once. If no call was under way whose effect is in doubt, the run ends as
``cancelled``. If one was (it started, it has no result, and it is not safe to repeat: a
charge, an email), the run does not pretend it knows: the call is journaled as in doubt, the
run stops for a person exactly as after a crash, and once the person has said what happened it
ends as ``cancelled``. The run frees its thread at once either way.

**Recover** claims the runs a driver should advance now (interrupted ones whose lease expired,
and queued ones that are first in their thread) for the agents this runtime knows, and drives
them. It says which runs it left, why, and until when (a live lease: when it expires).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from keel._core.events import (
    FINISHED,
    ApprovalRequested,
    CancelRequested,
    ErrorInfo,
    Event,
    PendingCall,
    RunFinished,
    ToolCallInDoubt,
)
from keel._runtime.kernel import Kernel
from keel._runtime.result import RunResult
from keel._runtime.running import Runs
from keel.errors import KeelError, LeaseLostError, RunLeasedError

__all__ = ["Recovery", "Skipped", "cancel", "recover"]


class Skipped(NamedTuple):
    """A run :meth:`keel.Runtime.recover` left: why, and until when (for a live lease, when it
    expires, in seconds since the epoch; ``None`` when no time will change it)."""

    run_id: str
    reason: str
    until: float | None = None


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`keel.Runtime.recover` did: the runs it continued, and those it left."""

    results: list[RunResult[Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


async def cancel(k: Kernel, run_id: str, *, reason: str) -> RunResult[Any]:
    """End a run for good; see the module docstring."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    k.cancels[run_id] = done
    try:
        lease = await k.store.acquire_lease(
            run_id, owner=k.driver_owner(), ttl_s=k.lease_ttl_s, force=True
        )
        local = k.drives.driver(run_id)
        if local is not None:
            local.stop()
        try:
            loaded = await k.load(run_id)
            state = loaded.state
            if state.status not in FINISHED and state.cancelling is None:
                await k.record(loaded, _cancellation(state, reason, k.clock.now()), lease)
        finally:
            await k.store.release_lease(lease)
    finally:
        k.cancels.pop(run_id, None)
        done.set_result(None)
    return k.result(k.agents.get(state.agent), state)


def _cancellation(state: Any, reason: str, now: float) -> list[Event]:
    why = ErrorInfo(code="cancelled", message=reason)
    doubtful = [s for s in state.started.values() if s.repeatable is not True]
    if not doubtful:
        return [RunFinished(status="cancelled", error=why, at=now)]
    events: list[Event] = []
    pending = []
    for started in doubtful:
        doubt = state.in_doubt.get(started.call.id) or ErrorInfo(
            code="cancelled",
            message=f"the run was cancelled while '{started.call.name}' ran; it is not safe "
            "to repeat, so whether its effect happened is in doubt",
        )
        if started.call.id not in state.in_doubt:
            events.append(
                ToolCallInDoubt(step=started.step, call=started.call, reason=doubt, at=now)
            )
        pending.append(
            PendingCall(
                call=started.call,
                kind="interrupted",
                idempotency_key=started.idempotency_key,
                reason=doubt.message,
            )
        )
    events.append(CancelRequested(reason=why, at=now))
    events.append(ApprovalRequested(step=state.step, calls=tuple(pending), at=now))
    return events


async def recover(k: Kernel, runs: Runs, *, limit: int, concurrency: int) -> Recovery:
    """Continue interrupted and waiting runs of the known agents; see the module docstring."""
    recovery = Recovery()
    known = list(k.agents)
    leases = (
        await k.store.claim_runs(
            owner=k.driver_owner(), ttl_s=k.lease_ttl_s, limit=limit, agents=known
        )
        if known
        else []
    )
    gate = asyncio.Semaphore(concurrency)
    handled: set[str] = set()

    async def one(lease: Any) -> None:
        handled.add(lease.run_id)
        async with gate:
            try:
                record = await k.store.get_run(lease.run_id)
                agent = k.agents[record.agent]
                recovery.results.append(await runs.continue_claimed(agent, lease))
            except (RunLeasedError, LeaseLostError) as exc:
                recovery.skipped.append(Skipped(lease.run_id, exc.message))
            except KeelError as exc:  # e.g. its recorded model cannot be used here
                await k.store.release_lease(lease)
                recovery.skipped.append(Skipped(lease.run_id, exc.message))

    await asyncio.gather(*(one(lease) for lease in leases))
    now = k.clock.now()
    for record in await k.store.list_runs(status=("running", "queued"), limit=None):
        if record.run_id in handled:
            continue
        if k.drives.running(record.run_id):
            recovery.skipped.append(Skipped(record.run_id, "this process is driving it now"))
        elif record.lease_expires_at is not None and record.lease_expires_at > now:
            owner = record.lease_owner or "another process"
            recovery.skipped.append(
                Skipped(
                    record.run_id,
                    f"{owner} holds its lease; it can be recovered when the lease expires",
                    record.lease_expires_at,
                )
            )
        elif record.agent not in k.agents:
            recovery.skipped.append(
                Skipped(record.run_id, f"agent '{record.agent}' is not registered")
            )
        elif record.status == "queued":
            recovery.skipped.append(
                Skipped(record.run_id, "it waits behind an earlier run of its thread")
            )
        else:
            recovery.skipped.append(Skipped(record.run_id, "more runs than the limit"))
    return recovery

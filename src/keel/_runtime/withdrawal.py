"""Withdrawing a queued run before anyone started it (a message that gave up waiting for its
thread)."""

from __future__ import annotations

from keel._core.events import ErrorInfo, RunFinished
from keel._runtime.kernel import Kernel
from keel.errors import RunLeasedError

__all__ = ["withdraw"]


async def withdraw(k: Kernel, run_id: str) -> bool:
    """Cancel our own queued run before anyone started it; ``False`` if a driver has it."""
    try:
        lease = await k.store.acquire_lease(run_id, owner=k.driver_owner(), ttl_s=k.lease_ttl_s)
    except RunLeasedError:
        return False
    try:
        loaded = await k.load(run_id)
        if loaded.state.status != "queued":
            return False
        withdrawn = ErrorInfo(
            code="withdrawn", message="the run was withdrawn from the queue before it started"
        )
        finished = RunFinished(status="cancelled", error=withdrawn, at=k.clock.now())
        await k.record(loaded, [finished], lease)
        return True
    finally:
        await k.store.release_lease(lease)

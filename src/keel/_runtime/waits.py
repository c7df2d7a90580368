"""Waiting in the runtime: for a store's change, or for the runtime's clock, whichever comes
first, so that a test clock makes every wait instant while real changes still wake it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from keel._runtime.kernel import Kernel
from keel.ports import Change, SystemClock

__all__ = ["pause", "watching"]


@contextlib.asynccontextmanager
async def watching(store: object, run_id: str | None) -> AsyncIterator[Change | None]:
    """The store's change registration for ``run_id`` (``None``: the queue), if it has any."""
    watch = getattr(store, "watch", None)
    if watch is None:
        yield None
        return
    async with watch(run_id) as change:
        yield change


async def pause(k: Kernel, changes: Change | None, seconds: float) -> None:
    """Wait ``seconds`` or until ``changes`` fires, whichever is first; the clock's sleep
    counts too, so a test clock makes waits instant."""
    seconds = max(0.0, seconds)
    sleep = getattr(k.clock, "sleep", None)
    if changes is None:
        await (sleep(seconds) if sleep is not None else asyncio.sleep(seconds))
        return
    if sleep is None or isinstance(k.clock, SystemClock):
        await changes.wait(seconds)
        return
    waiters = [
        asyncio.ensure_future(changes.wait(seconds)),
        asyncio.ensure_future(sleep(seconds)),
    ]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

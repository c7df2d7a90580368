"""One driver per run in a process: a caller that finds a run driven here waits for that
driver's result; when the driver lets go without one, the caller looks again instead of
failing with the driver's cancellation."""

from __future__ import annotations

import asyncio

import pytest

from keel._runtime.kernel import Drives, joined


async def _hold(drives: Drives, entered: asyncio.Event, release: asyncio.Event) -> None:
    async with drives.exclusive("run-1") as other:
        assert other is None  # this one drives
        entered.set()
        await release.wait()  # and lets go without a result (it found the run taken)


async def test_a_waiter_on_a_driver_that_lets_go_without_a_result_gets_none() -> None:
    drives = Drives()
    entered, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(drives, entered, release))
    await entered.wait()
    async with drives.exclusive("run-1") as other:
        assert other is not None
        waiting = asyncio.create_task(joined(other))
        await asyncio.sleep(0)
        release.set()
        assert await waiting is None
    await holder
    async with drives.exclusive("run-1") as again:
        assert again is None  # free: the caller may drive it now


async def test_a_waiter_gets_the_drivers_result() -> None:
    drives = Drives()
    async with drives.exclusive("run-1") as mine:
        assert mine is None
        async with drives.exclusive("run-1") as other:
            assert other is not None
            waiting = asyncio.create_task(joined(other))
            drives.done("run-1", "the result")
            assert await waiting == "the result"


async def test_a_waiter_that_is_cancelled_itself_is_cancelled() -> None:
    drives = Drives()
    entered, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(drives, entered, release))
    await entered.wait()
    async with drives.exclusive("run-1") as other:
        assert other is not None
        waiting = asyncio.create_task(joined(other))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    release.set()
    await holder

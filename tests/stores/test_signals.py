"""In-process wake-ups: a change another process makes (seen as a new database version) wakes
every waiting registration, read once per interval for all of them, not once per waiter."""

from __future__ import annotations

import asyncio

from keel.stores._signals import Signals


class Versions:
    """A database version that the test moves, counting how often it is read."""

    def __init__(self) -> None:
        self.version = 0
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.version


async def test_a_new_version_wakes_every_waiter_with_one_read_per_interval() -> None:
    versions = Versions()
    signals = Signals(poll=versions, poll_interval_s=0.01)
    waiters = 50

    async def wait_for(run_id: str, entered: asyncio.Event) -> bool:
        async with signals.watch(run_id) as change:
            entered.set()
            return await change.wait(10.0)

    entered = [asyncio.Event() for _ in range(waiters)]
    tasks = [asyncio.create_task(wait_for(f"run-{n}", entered[n])) for n in range(waiters)]
    for event in entered:
        await event.wait()
    await asyncio.sleep(0.2)  # about 20 intervals with nothing new
    assert not any(task.done() for task in tasks)
    reads_while_idle = versions.reads
    versions.version += 1  # another process committed
    woken = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert woken == [True] * waiters
    # One read per interval for all of them (plus one as each registered), never one per
    # waiter per interval (which would be about 1,000 here).
    assert reads_while_idle < 2 * waiters


async def test_a_change_before_the_wait_is_not_missed() -> None:
    versions = Versions()
    signals = Signals(poll=versions, poll_interval_s=0.01)
    async with signals.watch("run-1") as change:
        versions.version += 1  # committed between the registration and the wait
        await asyncio.sleep(0.02)
        assert await change.wait(0.0) is True
        assert await change.wait(0.05) is False  # nothing since


async def test_an_in_process_notice_wakes_only_its_run() -> None:
    signals = Signals(poll=Versions(), poll_interval_s=0.01)
    async with signals.watch("a") as a, signals.watch("b") as b:
        signals.notify("a")
        assert await a.wait(1.0) is True
        assert await b.wait(0.05) is False

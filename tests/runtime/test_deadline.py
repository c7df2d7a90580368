"""The per-await time limit behaves like ``asyncio.timeout``."""

from __future__ import annotations

import asyncio

import pytest

from keel._runtime.deadline import Deadline


async def test_a_body_past_its_limit_raises_timeout_error() -> None:
    deadline = Deadline(0.01)
    with pytest.raises(TimeoutError):
        async with deadline:
            await asyncio.sleep(5)
    assert deadline.expired()


async def test_a_body_within_its_limit_is_left_alone() -> None:
    deadline = Deadline(5)
    async with deadline:
        await asyncio.sleep(0)
    assert not deadline.expired()
    await asyncio.sleep(0.01)  # the timer was cancelled: nothing fires later


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    started = asyncio.Event()

    async def body() -> None:
        async with Deadline(5):
            started.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_racing_the_limit_is_not_swallowed() -> None:
    async def body() -> None:
        async with Deadline(0.01):
            current = asyncio.current_task()
            assert current is not None
            await asyncio.sleep(0.02)  # the limit fires...

    task = asyncio.create_task(body())
    await asyncio.sleep(0.015)
    task.cancel()  # ...and someone cancels too: the cancellation wins
    with pytest.raises((asyncio.CancelledError, TimeoutError)):
        await task

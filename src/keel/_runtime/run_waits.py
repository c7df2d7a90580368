"""Waiting for a run to stop: ``Runtime.wait`` and ``Runtime.result``.

A run driven elsewhere is watched through the store, which wakes the waiter when the run
changes. A run this process drives is waited on through its driver instead: the waiter wakes
once, when the driver lets go, and takes the result the driver made from the state it holds,
rather than waking at every step and reading the journal back (a server's create-and-wait
request spends most of its time here).
"""

from __future__ import annotations

import asyncio
from typing import Any

from typing_extensions import TypeVar

from keel._agent import Agent
from keel._runtime.kernel import Kernel
from keel._runtime.result import RunResult
from keel._runtime.waits import pause, watching
from keel.ports import SystemClock

__all__ = ["run_result", "wait_for_run"]

OutputT = TypeVar("OutputT", default=Any)

_GOING = ("queued", "running")


async def wait_for_run(
    k: Kernel, run_id: str, agent: Agent[OutputT] | None, *, timeout_s: float | None
) -> RunResult[OutputT]:
    """Wait until the run is no longer queued or running (or ``timeout_s`` passed), and
    return where it stands, as ``agent`` (default: the registered one) reads it."""
    deadline = None if timeout_s is None else k.clock.monotonic() + timeout_s
    async with watching(k.store, run_id) as changes:
        while True:
            record = await k.store.get_run(run_id)
            if record.status not in _GOING:
                break
            remaining = None if deadline is None else deadline - k.clock.monotonic()
            if remaining is not None and remaining <= 0:
                break
            seconds = 1.0 if remaining is None else min(remaining, 1.0)
            driving = k.drives.outcome(run_id)
            driver = k.drives.driver(run_id)
            if driving is not None and driver is not None and isinstance(k.clock, SystemClock):
                await asyncio.wait({driving}, timeout=seconds)
                chosen = agent if agent is not None else k.agents.get(record.agent)
                if chosen is driver.agent:  # the result reads the output as the caller would
                    done = _ended(driving)
                    if done is not None:
                        return done
                continue
            await pause(k, changes, seconds)
    return await run_result(k, run_id, agent)


async def run_result(
    k: Kernel, run_id: str, agent: Agent[OutputT] | None = None
) -> RunResult[OutputT]:
    """Where a run stands now, from its journal."""
    record = await k.store.get_run(run_id)
    chosen = agent if agent is not None else k.agents.get(record.agent)
    state = (await k.load(run_id)).state
    return k.result(chosen, state)


def _ended(driving: asyncio.Future[Any]) -> RunResult[Any] | None:
    """The result a driver ended with, if it left the run no longer queued or running."""
    if not driving.done() or driving.cancelled() or driving.exception() is not None:
        return None
    result = driving.result()
    if not isinstance(result, RunResult) or result.status in _GOING:
        return None
    return result

"""What the intake tests share: an agent that answers at once, and stores that fail or hold
starts on purpose."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from keel import Agent, StoreError
from keel.messages import ModelRequest, UserMessage
from keel.ports import Lease
from keel.stores import MemoryStore
from keel.testing import FunctionModel

__all__ = [
    "BlockingStore",
    "FailingClaims",
    "FailingStore",
    "died",
    "echo",
    "eventually",
    "start_dying",
]

ROOT = Path(__file__).resolve().parents[2]
DYING = Path(__file__).with_name("dying_intake.py")


def _answer(request: ModelRequest) -> str:
    said = [m.content for m in request.messages if isinstance(m, UserMessage)]
    return f"echo: {said[-1]}"


def echo(name: str = "echo") -> Agent[str]:
    """An agent that answers with what it was told."""
    return Agent(name=name, model=FunctionModel(_answer))


class FailingStore(MemoryStore):
    """A store whose run starts fail, as a database that is down would: the first ``times``
    of them (``None``: every one). Nothing is written by a failed start."""

    def __init__(self, times: int | None) -> None:
        super().__init__(check_json=True)
        self.times = times
        self.failed = 0

    async def start_run(self, run_id: str, events: Any, **options: Any) -> Lease | None:
        if self.times is None or self.failed < self.times:
            self.failed += 1
            raise StoreError("the database is down (connection refused)")
        return await super().start_run(run_id, events, **options)


class FailingClaims(MemoryStore):
    """A store whose first ``times`` claims fail, as a database that is down would."""

    def __init__(self, times: int) -> None:
        super().__init__(check_json=True)
        self.times = times

    async def claim_runs(self, **options: Any) -> list[Lease]:
        if self.times > 0:
            self.times -= 1
            raise StoreError("the database is down (connection refused)")
        return await super().claim_runs(**options)


class BlockingStore(MemoryStore):
    """A store whose run starts wait until ``release`` is set, counting how many wait."""

    def __init__(self) -> None:
        super().__init__(check_json=True)
        self.release = asyncio.Event()
        self.waiting = 0
        self.most_waiting = 0
        self.changed = asyncio.Event()

    async def start_run(self, run_id: str, events: Any, **options: Any) -> Lease | None:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        self.changed.set()
        try:
            await self.release.wait()
        finally:
            self.waiting -= 1
        return await super().start_run(run_id, events, **options)

    async def until_waiting(self, count: int) -> None:
        """Return once ``count`` starts wait."""
        while self.waiting < count:
            self.changed.clear()
            await self.changed.wait()


async def eventually(check: Callable[[], Awaitable[bool]], *, within_s: float = 20.0) -> None:
    """Return once ``check()`` holds, looking again every few milliseconds; fail after
    ``within_s`` (a safety net for a test that would otherwise hang, not a timing claim)."""
    async with asyncio.timeout(within_s):
        while not await check():  # noqa: ASYNC110 - any condition, not one event
            await asyncio.sleep(0.01)


async def start_dying(*args: str) -> asyncio.subprocess.Process:
    """Start ``dying_intake.py`` with ``args``: an intake process that dies after its first
    submit, before acknowledging the message."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(DYING),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def died(process: asyncio.subprocess.Process, *, within_s: float = 20.0) -> str:
    """What the dying intake printed, once it died as it should (exit code 17)."""
    try:
        out, err = await asyncio.wait_for(process.communicate(), within_s)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode == 17, err.decode()
    return out.decode()

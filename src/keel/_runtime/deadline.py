"""A time limit for the awaits of one task, cheaper than :func:`asyncio.timeout`.

Every step of a run bounds two awaits (the model call, the tool call), so the limit is on the
hot path: this costs one timer and no extra objects beyond itself, about half of what
``asyncio.timeout`` costs here, with the same semantics: when the time is up the task is
cancelled, and the cancellation comes out as :class:`TimeoutError` unless the task was also
cancelled by someone else, in which case the cancellation goes on.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Deadline", "WallTime"]


def _timed_out(
    expired: bool,
    task: asyncio.Task[object] | None,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
) -> None:
    """On leaving a limit that fired: undo its cancellation of ``task``, and if nobody else
    cancelled the task, turn the cancellation into ``TimeoutError``."""
    if expired and task is not None and task.uncancel() == 0 and exc_type is asyncio.CancelledError:
        raise TimeoutError from exc


class Deadline:
    """``async with Deadline(seconds):`` cancels the body after ``seconds``; see the module."""

    __slots__ = ("_expired", "_handle", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._expired = False
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None

    def expired(self) -> bool:
        """Whether the limit was reached (and the body cancelled because of it)."""
        return self._expired

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        loop = asyncio.get_running_loop()
        self._handle = loop.call_at(loop.time() + self._seconds, self._fire)
        return self

    def _fire(self) -> None:
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        _timed_out(self._expired, self._task, exc_type, exc)
        return None


class WallTime:
    """One run's wall-time deadline for one stretch of driving: one timer for the whole drive,
    armed around each model call (``async with wall_time:``), which the deadline cancels if
    it is still under way then, as :class:`TimeoutError`.
    """

    __slots__ = ("_at", "_expired", "_handle", "_inside", "_task")

    def __init__(self) -> None:
        self._at: float | None = None
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._inside = False
        self._task: asyncio.Task[object] | None = None

    def start(self, seconds: float) -> None:
        """Set the deadline ``seconds`` from now (for the driving task)."""
        self.stop()
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._expired = False
        self._handle = loop.call_at(loop.time() + max(0.0, seconds), self._fire)

    def stop(self) -> None:
        """Drop the timer (the drive ended)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def expired(self) -> bool:
        """Whether the deadline passed during a model call."""
        return self._expired

    def _fire(self) -> None:
        self._handle = None
        if self._inside and self._task is not None:
            self._expired = True
            self._task.cancel()

    async def __aenter__(self) -> WallTime:
        self._inside = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self._inside = False
        _timed_out(self._expired, self._task, exc_type, exc)
        return None

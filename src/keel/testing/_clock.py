"""A clock that moves only when told, for testing deadlines and timestamps without sleeping."""

from __future__ import annotations

import asyncio

__all__ = ["FakeClock"]


class FakeClock:
    """Implements :class:`keel.ports.Clock`; ``advance`` moves both wall and monotonic time.

    ``tick`` (seconds) is added after every reading, so consecutive events get distinct,
    increasing timestamps without explicit ``advance`` calls. ``sleep`` does not wait: it
    moves the clock forward by the time asked and lets other tasks run once, so backoffs,
    retries and queue timeouts of a runtime on this clock take no real time. ``slept`` is the
    total time slept.
    """

    def __init__(self, start: float = 1_700_000_000.0, *, tick: float = 0.0) -> None:
        if tick < 0:
            raise ValueError("tick must be 0 or more")
        self._now = start
        self._monotonic = 0.0
        self._tick = tick
        self.slept = 0.0

    def now(self) -> float:
        """Seconds since the epoch."""
        value = self._now
        self.advance(self._tick)
        return value

    def monotonic(self) -> float:
        """Seconds since the clock was made."""
        value = self._monotonic
        self.advance(self._tick)
        return value

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds
        self._monotonic += seconds

    async def sleep(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (at once) and yield to other tasks."""
        if seconds > 0:
            self.advance(seconds)
            self.slept += seconds
        await asyncio.sleep(0)

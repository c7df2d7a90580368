"""Who follows a run's model text as it streams, and where the driver sends that text.

Followers in this process get each piece from the driver at once, on their queue. With a relay
(:class:`keel._runtime.relay_redis.RedisDeltaRelay`, when ``KEEL_REDIS_URL`` is set), the
pieces also cross processes: a follower here asks other processes for the text of the run it
follows, and a driver here publishes its text when a follower elsewhere asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from keel._runtime.driver import DeltaSink

if TYPE_CHECKING:
    from keel._runtime.relay_redis import RedisDeltaRelay

__all__ = ["Followers"]


class Followers:
    """Subscribers to the model text of runs as it streams (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]]] = {}
        #: Carries text to and from other processes (``None``: this process only).
        self.relay: RedisDeltaRelay | None = None

    @asynccontextmanager
    async def follow(self, run_id: str) -> AsyncIterator[asyncio.Queue[Any]]:
        """A queue that receives ``(step, text)`` pieces of ``run_id``'s streamed text."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._queues.setdefault(run_id, []).append(entry)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.relay is not None:
                    deliver = queue.put_nowait
                    await stack.enter_async_context(
                        self.relay.following(run_id, lambda step, text: deliver((step, text)))
                    )
                yield queue
        finally:
            with self._lock:
                found = self._queues.get(run_id, [])
                if entry in found:
                    found.remove(entry)
                if not found:
                    self._queues.pop(run_id, None)

    def sink(self, run_id: str) -> DeltaSink | None:
        """Where ``run_id``'s text goes in this process, or ``None`` when nobody here follows
        it."""
        if not self._queues:  # nobody follows any run: no lock needed
            return None
        with self._lock:
            if not self._queues.get(run_id):
                return None
        return self._publish

    async def sink_for(self, run_id: str) -> DeltaSink | None:
        """Where ``run_id``'s text goes, here and in other processes, or ``None`` when nobody
        follows it (then the model is not asked to stream)."""
        here = self.sink(run_id)
        relay = self.relay
        if relay is None or not await relay.wanted(run_id):
            return here

        def everywhere(run_id: str, step: int, text: str) -> None:
            if here is not None:
                here(run_id, step, text)
            relay.publish(run_id, step, text)

        return everywhere

    async def flushed(self) -> None:
        """Return once the text sent to other processes so far has left."""
        if self.relay is not None:
            await self.relay.flushed()

    def _publish(self, run_id: str, step: int, text: str) -> None:
        with self._lock:
            found = list(self._queues.get(run_id, ()))
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, queue in found:
            if loop is here:
                # At once: the text is queued before the answer it belongs to is journaled,
                # so a follower that reads the answer has its text already.
                queue.put_nowait((step, text))
            elif not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, (step, text))

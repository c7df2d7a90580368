"""In-process wake-ups for :meth:`keel.ports.Watchable.watch`.

A store calls :meth:`Signals.notify` after a write is durable; every registration for that run
(or for the queue) is woken. Registrations are made before the caller reads, so a change that
lands between the read and the wait is not missed. Safe across threads and event loops: a
notification reaches each registration on its own loop.

Changes made by other processes reach a registration through ``poll``: a cheap function the
store gives that returns a version of the database (SQLite: ``PRAGMA data_version``, which
moves when another connection commits), read every ``poll_interval_s`` while a registration
waits, or through the store calling :meth:`notify` itself when its database tells
it (PostgreSQL ``LISTEN``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable

from keel.stores._common import QUEUE_KEY

__all__ = ["QUEUE", "Registration", "Signals"]

QUEUE = QUEUE_KEY
"""The key of queue registrations (no run id can be this)."""


class Registration:
    """One caller's interest in a key; implements :class:`keel.ports.Change`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poll: Callable[[], int] | None,
        poll_interval_s: float,
    ) -> None:
        self._loop = loop
        self._changed = False
        self._waiter: asyncio.Future[None] | None = None
        self._poll = poll
        self._poll_interval_s = poll_interval_s
        self._seen = None if poll is None else poll()

    def _polled(self) -> bool:
        if self._poll is None:
            return False
        version = self._poll()
        if version == self._seen:
            return False
        self._seen = version
        return True

    def set(self) -> None:
        """Mark a change (from any thread)."""
        if self._loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._changed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout_s: float) -> bool:
        """Wait for a change since the registration or the last wait; ``False`` on timeout."""
        deadline = self._loop.time() + max(0.0, timeout_s)
        while True:
            if self._changed or self._polled():
                self._changed = False
                return True
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return False
            if self._poll is not None:
                remaining = min(remaining, self._poll_interval_s)
            self._waiter = self._loop.create_future()
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._waiter
            finally:
                self._waiter = None


class Signals:
    """The registrations of one store, by run id (or :data:`QUEUE`)."""

    def __init__(
        self, *, poll: Callable[[], int] | None = None, poll_interval_s: float = 0.05
    ) -> None:
        self._lock = threading.Lock()
        self._registrations: dict[str, set[Registration]] = {}
        self._poll = poll
        self._poll_interval_s = poll_interval_s

    @property
    def watched(self) -> bool:
        """Whether anyone is registered at all (read without the lock: a hint)."""
        return bool(self._registrations)

    def notify(self, *keys: str) -> None:
        """Wake every registration for these keys."""
        if not self._registrations:  # nobody listens: the common case costs nothing
            return
        with self._lock:
            found = [r for key in keys for r in self._registrations.get(key, ())]
        for registration in found:
            registration.set()

    def notify_all(self) -> None:
        """Wake every registration (a spurious wake-up: when changes may have been missed)."""
        with self._lock:
            found = [r for registrations in self._registrations.values() for r in registrations]
        for registration in found:
            registration.set()

    @contextlib.asynccontextmanager
    async def watch(self, run_id: str | None) -> AsyncIterator[Registration]:
        """Register for changes of ``run_id`` (``None``: the queue) while the block runs."""
        key = QUEUE if run_id is None else run_id
        registration = Registration(asyncio.get_running_loop(), self._poll, self._poll_interval_s)
        with self._lock:
            self._registrations.setdefault(key, set()).add(registration)
        try:
            yield registration
        finally:
            with self._lock:
                found = self._registrations.get(key)
                if found is not None:
                    found.discard(registration)
                    if not found:
                        del self._registrations[key]

"""In-process wake-ups for :meth:`keel.ports.Watchable.watch`.

A store calls :meth:`Signals.notify` after a write is durable; every registration for that run
(or for the queue) is woken. Registrations are made before the caller reads, so a change that
lands between the read and the wait is not missed. Safe across threads and event loops: a
notification reaches each registration on its own loop.

Changes made by other processes reach a registration through ``poll``: a cheap function the
store gives that returns a version of the database (SQLite: ``PRAGMA data_version``, which
moves when another connection commits), read every ``poll_interval_s`` while any registration
of an event loop waits (once for all of them), or through the store calling :meth:`notify`
itself when its database tells it (PostgreSQL ``LISTEN``).
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


class _Poller:
    """Reads the database's version for every registration of one event loop: one read per
    interval while any of them waits, however many there are (a server holds one per request
    that waits for its run), rather than one timer and one read per registration."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, poll: Callable[[], int], interval_s: float
    ) -> None:
        self._loop = loop
        self._poll = poll
        self._interval_s = interval_s
        self._version = poll()
        self._read_at = loop.time()
        #: Moves each time the version is seen to change.
        self.generation = 0
        self._waiting: set[Registration] = set()
        self._task: asyncio.Task[None] | None = None

    def current(self) -> int:
        """The generation now, after reading the version if the last read is not fresh."""
        if self._loop.time() - self._read_at >= self._interval_s:
            self._read()
        return self.generation

    def _read(self) -> None:
        self._read_at = self._loop.time()
        version = self._poll()
        if version != self._version:
            self._version = version
            self.generation += 1

    def add(self, registration: Registration) -> None:
        self._waiting.add(registration)
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._run())

    def discard(self, registration: Registration) -> None:
        self._waiting.discard(registration)

    async def _run(self) -> None:
        while self._waiting:
            await asyncio.sleep(self._interval_s)
            before = self.generation
            self._read()
            if self.generation != before:
                for registration in list(self._waiting):
                    registration.polled(self.generation)


class Registration:
    """One caller's interest in a key; implements :class:`keel.ports.Change`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, poller: _Poller | None) -> None:
        self._loop = loop
        self._changed = False
        self._waiter: asyncio.Future[None] | None = None
        self._poller = poller
        self._seen = 0 if poller is None else poller.current()

    def _polled(self) -> bool:
        if self._poller is None:
            return False
        return self.polled(self._poller.current())

    def polled(self, generation: int) -> bool:
        """Take the database's version ``generation``; wake if it moved since last seen."""
        if generation == self._seen:
            return False
        self._seen = generation
        self._wake()
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
        self._polled()
        if self._changed:
            self._changed = False
            return True
        if timeout_s <= 0:
            return False
        self._waiter = self._loop.create_future()
        if self._poller is not None:
            self._poller.add(self)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._waiter
        finally:
            self._waiter = None
            if self._poller is not None:
                self._poller.discard(self)
        changed, self._changed = self._changed, False
        return changed


class Signals:
    """The registrations of one store, by run id (or :data:`QUEUE`)."""

    def __init__(
        self, *, poll: Callable[[], int] | None = None, poll_interval_s: float = 0.05
    ) -> None:
        self._lock = threading.Lock()
        self._registrations: dict[str, set[Registration]] = {}
        self._poll = poll
        self._poll_interval_s = poll_interval_s
        self._pollers: dict[asyncio.AbstractEventLoop, _Poller] = {}

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
        loop = asyncio.get_running_loop()
        registration = Registration(loop, self._poller(loop))
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

    def _poller(self, loop: asyncio.AbstractEventLoop) -> _Poller | None:
        """The poller of ``loop`` (made on first use), or ``None`` without a poll."""
        if self._poll is None:
            return None
        with self._lock:
            poller = self._pollers.get(loop)
            if poller is None:
                for gone in [other for other in self._pollers if other.is_closed()]:
                    del self._pollers[gone]
                poller = self._pollers[loop] = _Poller(loop, self._poll, self._poll_interval_s)
        return poller

"""Waking watchers through PostgreSQL: ``NOTIFY`` after each commit, one ``LISTEN``
connection per event loop.

A write that may interest a watcher wakes this process's watchers as soon as it has committed,
and hands its keys to the store's :class:`Notifier`, which sends them with ``NOTIFY`` after the
commit (not in the write's transaction: a transaction that notifies takes a lock on the whole
database at commit, so all such commits would take turns), coalesced: one statement for every
key that came in while the previous one was in flight. So a lone write's notification leaves at
once, and under load one statement carries many. A process that dies between a commit and its
notification leaves other processes' watchers to find the change when they next look (every
waiter has a timeout).

The listener of each event loop that has watchers receives the notifications and wakes the
registrations of that key. A listener is started by the first ``watch`` on its loop, and
``watch`` waits until its ``LISTEN`` is in place, so no change made after the registration is
missed.

``LISTEN`` needs a session of its own, which a pooler in transaction mode does not give: the
store's ``listen_url`` can point straight at the server. When ``LISTEN`` is impossible (the
connection fails or is lost), the listener falls back to polling: it wakes every watcher every
``poll_interval_s`` (a spurious wake-up: they read again), and tries to listen again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import psycopg
from psycopg import sql

from keel.stores._signals import Signals
from keel.stores._sql.postgres_sql import decode_payload

__all__ = ["Listeners", "Notifier"]

_log = logging.getLogger("keel.stores")

_Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]

# How long the listener polls before it tries to listen again.
_RETRY_S = 2.0


class _Listener:
    def __init__(self, owner: Listeners) -> None:
        self.ready = asyncio.Event()
        self.listening = False
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self._owner = owner
        self.task = asyncio.get_running_loop().create_task(self._main(), name="keel-listen")

    async def _main(self) -> None:
        owner = self._owner
        while True:
            try:
                async with await owner.connect() as conn:
                    self.conn = conn
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(owner.channel)))
                    self.listening = True
                    if self.ready.is_set():  # listening again: changes may have been missed
                        owner.signals.notify_all()
                    self.ready.set()
                    async for message in conn.notifies():
                        key = decode_payload(message.payload)
                        if key is not None:
                            owner.signals.notify(key)
            except (psycopg.Error, OSError):
                pass
            self.conn = None
            self.listening = False
            self.ready.set()
            await self._poll(_RETRY_S)

    async def _poll(self, seconds: float) -> None:
        interval = self._owner.poll_interval_s
        for _ in range(max(1, round(seconds / interval))):
            self._owner.signals.notify_all()
            await asyncio.sleep(interval)


class Listeners:
    """The ``LISTEN`` connections of one store, one per event loop that watches."""

    def __init__(
        self, *, connect: _Connect, channel: str, signals: Signals, poll_interval_s: float
    ) -> None:
        self.connect = connect
        self.channel = channel
        self.signals = signals
        self.poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Listener] = (
            weakref.WeakKeyDictionary()
        )

    async def ensure(self) -> None:
        """Start this loop's listener if needed, and wait until it listens (or polls)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for other in [other for other in self._by_loop if other.is_closed()]:
                _abandon(self._by_loop.pop(other))
            listener = self._by_loop.get(loop)
            if listener is None or listener.task.done():
                listener = self._by_loop[loop] = _Listener(self)
        await listener.ready.wait()

    def listening(self) -> bool:
        """Whether this loop's listener receives notifications now (not polling)."""
        with contextlib.suppress(RuntimeError):
            listener = self._by_loop.get(asyncio.get_running_loop())
            return listener is not None and listener.listening
        return False

    async def close(self) -> None:
        """Stop every listener: this loop's is awaited, other loops' are told to stop."""
        with self._lock:
            listeners = list(self._by_loop.items())
            self._by_loop.clear()
        current = asyncio.get_running_loop()
        for loop, listener in listeners:
            if loop is current:
                listener.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener.task
            elif loop.is_closed():
                _abandon(listener)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(listener.task.cancel)


def _abandon(listener: _Listener) -> None:
    """Close the connection of a listener whose event loop is closed (its task cannot run
    any more), so that the server session ends now rather than when it is collected."""
    conn = listener.conn
    if conn is not None and not conn.closed:
        conn.pgconn.finish()


class Notifier:
    """Sends the keys of committed writes with ``NOTIFY``, after their commit, coalesced.

    Args:
        send: Sends one statement notifying these keys (a failure is logged and dropped:
            watchers elsewhere find the change when their wait times out).
    """

    def __init__(self, send: Callable[[list[str]], Awaitable[None]]) -> None:
        self._send = send
        self._keys: dict[str, None] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, keys: Iterable[str]) -> None:
        """Notify ``keys`` (of writes that committed) as soon as the statement in flight, if
        any, is done."""
        self._keys.update(dict.fromkeys(keys))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._main(), name="keel-notify")

    async def flush(self) -> None:
        """Wait until every key added so far was sent (or failed to be)."""
        while self._task is not None:
            await asyncio.wait({self._task})

    async def _main(self) -> None:
        try:
            while self._keys:
                keys = list(self._keys)
                self._keys = {}
                try:
                    await self._send(keys)
                except Exception as exc:  # noqa: BLE001 - a notification is a hint, never an error
                    _log.debug(
                        "could not send %d notifications (%s)", len(keys), type(exc).__name__
                    )
        finally:
            self._task = None

"""A response cache in a SQLite file, shared by every process on the machine that opens it.

It keeps one table, ``response_cache(key PRIMARY KEY, body, expires_at)``, in any SQLite file:
its own, or the journal's ``keel.db`` (the journal's migrations never touch that table, and
the cache never touches theirs). It opens its own connection, in WAL mode like the journal,
with ``synchronous = NORMAL``: a power cut may lose the last entries stored, which costs only
a model call, so the cache does not pay an fsync per entry. (``synchronous`` is a setting of
the connection, not of the file: the journal's own connection keeps its durability.)

As in :mod:`keel.stores._sqlite`, the statements run inline on the event loop's thread (a
handoff to a worker thread costs more than the statement), one connection guarded by a
``threading.Lock``. Each statement is its own transaction; a write waits up to
``busy_timeout_s`` for another connection's write lock, the journal's included.

Expiry is by wall time (``expires_at``, seconds since the epoch, from the cache's clock), so
all processes on the file agree on it. Expired rows are purged lazily: a lookup that finds one
deletes it, and every 256th store (and the first use) deletes all expired rows.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from keel._core.messages import ModelResponse
from keel.errors import ConfigurationError, UsageError
from keel.ports import Clock, SystemClock
from keel.resilience._cache_base import CacheStats, check_ttl, decode_response, encode_response

__all__ = ["SQLiteResponseCache"]

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS response_cache (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    expires_at REAL NOT NULL
)
"""
_SELECT = "SELECT body, expires_at FROM response_cache WHERE key = ?"
_UPSERT = """
INSERT INTO response_cache (key, body, expires_at) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at
"""
# Only the row that was read: another process may have stored a fresh one meanwhile.
_DELETE_STALE = "DELETE FROM response_cache WHERE key = ? AND expires_at = ?"
_PURGE_EXPIRED = "DELETE FROM response_cache WHERE expires_at <= ?"
_CLEAR = "DELETE FROM response_cache"

# Every this many stores, expired rows are purged.
_PURGE_EVERY = 256


class SQLiteResponseCache:
    """Keeps responses in the ``response_cache`` table of a SQLite file; implements
    ``ResponseCache``.

    Args:
        path: The database file (parent directories are created); it may be the journal's
            ``keel.db``. ``":memory:"`` keeps the cache in this connection's memory.
        clock: The clock expiry is measured by (wall time); the system clock by default.
        busy_timeout_s: How long a write waits for another connection's write lock.

    The file is opened on first use. SQLite errors are raised as ``sqlite3.Error``; the
    :class:`keel.resilience._cache.Caching` wrapper answers without the cache when they occur.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        busy_timeout_s: float = 5.0,
    ) -> None:
        if busy_timeout_s < 0:
            raise ConfigurationError(f"busy_timeout_s must be 0 or more, got {busy_timeout_s}")
        self._path = os.fspath(path)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._stores_since_purge = 0
        self._stats = CacheStats()

    def __repr__(self) -> str:
        return f"SQLiteResponseCache({self._path!r})"

    @property
    def path(self) -> str:
        """The database file this cache uses."""
        return self._path

    @property
    def stats(self) -> CacheStats:
        """What this cache did so far (in this process)."""
        return self._stats

    async def get(self, key: str) -> ModelResponse | None:
        """The unexpired response stored under ``key``, or ``None``."""
        with self._lock:
            conn = self._connection()
            row: tuple[Any, ...] | None = conn.execute(_SELECT, (key,)).fetchone()
            response = None
            if row is not None:
                body, expires_at = row
                if expires_at > self._clock.now():
                    response = decode_response(body)
                if response is None:  # expired, or written in a format that no longer reads
                    conn.execute(_DELETE_STALE, (key, expires_at))
        if response is None:
            self._stats.misses += 1
            return None
        self._stats.record_hit(response)
        return response

    async def put(self, key: str, response: ModelResponse, ttl_s: float) -> None:
        """Store ``response`` under ``key`` for ``ttl_s`` seconds."""
        expires_at = self._clock.now() + check_ttl(ttl_s)
        body = encode_response(response).decode("utf-8")
        with self._lock:
            conn = self._connection()
            conn.execute(_UPSERT, (key, body, expires_at))
            self._stores_since_purge += 1
            if self._stores_since_purge >= _PURGE_EVERY:
                self._purge(conn)
        self._stats.stores += 1

    async def clear(self) -> None:
        """Remove every entry of the table."""
        with self._lock:
            self._connection().execute(_CLEAR)

    async def purge_expired(self) -> int:
        """Delete every expired entry now; return how many there were."""
        with self._lock:
            return self._purge(self._connection())

    async def close(self) -> None:
        """Close the connection. Closing twice is fine; any other use afterwards raises
        :class:`keel.errors.UsageError`."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _purge(self, conn: sqlite3.Connection) -> int:
        self._stores_since_purge = 0
        purged: int = conn.execute(_PURGE_EXPIRED, (self._clock.now(),)).rowcount
        return purged

    def _connection(self) -> sqlite3.Connection:
        """The open connection, opening and preparing the file on first use. Called with
        ``self._lock`` held."""
        if self._conn is not None:
            return self._conn
        if self._closed:
            raise UsageError(f"{self!r} is closed; create a new cache to keep caching")
        if self._path not in (":memory:", ""):
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout_s * 1000)}")
            conn.execute(_CREATE_TABLE)
            self._purge(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

"""API keys in a SQLite file: a table beside Keel's own, in the store's database.

The standard library's :mod:`sqlite3` runs on worker threads (:func:`asyncio.to_thread`),
one connection per key store used one call at a time. Every process that opens the file
sees the same keys: a key created by ``keel keys create`` works at once in a running
``keel serve``, and a revoked one stops working on its next request.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

from keel._sqlite import use_wal
from keel.errors import ConfigurationError, StoreError
from keel.server._keys import KeyRow, KeyStore
from keel.server._keys_rows import COLUMNS, row_of, values_of

__all__ = ["SQLiteKeyStore"]

T = TypeVar("T")

_SCHEMA = """CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    user_name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    roles TEXT NOT NULL,
    name TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL,
    salt TEXT NOT NULL,
    digest TEXT NOT NULL
)"""
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM api_keys"  # noqa: S608 - constant column names
_INSERT = f"INSERT INTO api_keys ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608


class SQLiteKeyStore(KeyStore):
    """A :class:`KeyStore` in a SQLite file (usually the store's own).

    Args:
        path: The database file; the ``api_keys`` table is created on first use.
        busy_timeout_s: How long a call waits for another process's write lock.
        clock: Gives ``created_at`` and ``revoked_at``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float = 30.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(clock=clock)
        self._path = os.fspath(path)
        if self._path in ("", ":memory:"):
            raise ConfigurationError(
                "a SQLite key store needs a file every process can open; for one process use "
                "MemoryKeyStore()"
            )
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteKeyStore({self._path!r})"

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self!r} is closed; open a new key store")
        if self._conn is None:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                use_wal(conn, self._busy_timeout_s)
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout_s * 1000)}")
                conn.execute(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _call(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return work(self._connect())
            except sqlite3.Error as exc:
                raise StoreError(
                    f"the API keys in SQLite file {self._path} could not {action}: {exc}"
                ) from exc

    async def _run(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._call, action, work)

    async def _insert(self, row: KeyRow) -> None:
        await self._run("be written", lambda c: c.execute(_INSERT, values_of(row)))

    async def _find(self, key_id: str) -> KeyRow | None:
        def find(conn: sqlite3.Connection) -> KeyRow | None:
            found = conn.execute(f"{_SELECT} WHERE key_id = ?", (key_id,)).fetchone()
            return None if found is None else row_of(found)

        return await self._run("be read", find)

    async def _all(self) -> list[KeyRow]:
        return await self._run(
            "be read", lambda c: [row_of(r) for r in c.execute(_SELECT).fetchall()]
        )

    async def _revoke(self, key_id: str, at: float) -> bool:
        def revoke(conn: sqlite3.Connection) -> bool:
            done = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (at, key_id),
            )
            return done.rowcount > 0

        return await self._run("be revoked", revoke)

    async def _count(self) -> int:
        return await self._run(
            "be counted", lambda c: int(c.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0])
        )

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                self._closed = True
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close()

        await asyncio.to_thread(close)

"""Tables kept beside the journal in the store's SQLite file (webhook deliveries, schedules).

One connection per component, opened on first use, used by one worker thread at a time under
an ``asyncio.Lock``: the stdlib ``sqlite3`` blocks, so every call runs in
``asyncio.to_thread``. Writes that read before they write run in ``BEGIN IMMEDIATE``, which
takes the database's write lock first, so that two processes (replicas) take turns and a
compare-and-set is atomic across them. Failures become :class:`keel.errors.StoreError`
naming the file and what was being done.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from keel._sqlite import use_wal
from keel.errors import StoreError

__all__ = ["SQLiteTables", "immediate"]

T = TypeVar("T")


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A transaction holding the write lock from its start: what it reads stays true until it
    commits, in every process."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SQLiteTables:
    """A component's tables in one SQLite file, created (``schema``) when first used.

    Args:
        path: The database file, usually the store's.
        schema: ``CREATE ... IF NOT EXISTS`` statements.
        what: The component, for messages (``"the webhook outbox"``).
        busy_timeout_s: How long a write waits for another connection's lock.
    """

    def __init__(
        self, path: Path, schema: Sequence[str], *, what: str, busy_timeout_s: float = 10.0
    ) -> None:
        self.path = path
        self._schema = tuple(schema)
        self._what = what
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=False,  # one thread at a time, under the lock
            )
            try:
                use_wal(conn, self._busy_timeout_s)
                conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout_s * 1000)}")
                with immediate(conn):
                    for statement in self._schema:
                        conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def run(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on a worker thread; ``action`` says what it does, for errors
        ("claim deliveries")."""
        async with self._lock:
            if self._closed:
                raise StoreError(f"{self._what} in '{self.path}' is closed; open a new one")
            try:
                return await asyncio.to_thread(lambda: work(self._connection()))
            except sqlite3.Error as exc:
                raise StoreError(
                    f"{self._what} in '{self.path}' could not {action}: {exc}; check that the "
                    "file is a writable SQLite database and that no process holds its write "
                    "lock for long"
                ) from exc

    async def close(self) -> None:
        """Close the connection; closing twice is fine."""
        async with self._lock:
            self._closed = True
            if self._conn is not None:
                await asyncio.to_thread(self._conn.close)
                self._conn = None

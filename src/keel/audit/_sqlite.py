"""The audit log in a SQLite file: two tables beside Keel's own, in the same database.

``audit_log`` holds the records (``seq`` the primary key, ``hash`` unique) and
``audit_head`` one row, the ``seq`` and ``hash`` of the last record, updated in the same
transaction as each append: removing records from the end leaves the head pointing past
them. Triggers refuse ``UPDATE`` and ``DELETE`` on ``audit_log``; they stop mistakes, not
someone who can drop them (that is what verification and an anchored head are for).

Appends run ``BEGIN IMMEDIATE`` (the database's write lock, waited for up to the busy
timeout) before reading the head, so appends from several processes take turns and the chain
never forks. The stdlib ``sqlite3`` runs on worker threads (``asyncio.to_thread``): a writer
connection used under the append lock, and a reader connection for pages and verification.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypeVar

from keel._sqlite import use_wal
from keel.audit._log import AuditLog, Snapshot
from keel.audit._records import GENESIS_HASH, AuditEntry, AuditHead, AuditRecord, chain
from keel.audit._rows import COLUMNS, record_of, row_of
from keel.errors import ConfigurationError, StoreError

__all__ = ["SQLiteAuditLog"]

T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_log (
        seq INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        tenant TEXT,
        user_name TEXT,
        key_id TEXT,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        decision TEXT,
        reason TEXT,
        arguments_digest TEXT,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE
    )""",
    """CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    )""",
    "INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, :genesis)",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)
# Built from the constant column names only.
_INSERT = f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"  # noqa: S608
_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1"
_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'"


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A transaction that holds the write lock from its start, so that what it reads (the
    head) is still the head when it writes."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _Connection:
    """One sqlite3 connection, opened on first use, used by one thread at a time."""

    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None

    def get(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                use_wal(conn, self._busy_timeout_s)
                conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout_s * 1000)}")
                with _immediate(conn):
                    # Only a database without the log gets the tables, the triggers and an
                    # empty head: a head row someone deleted must stay missing, not reset.
                    if conn.execute(_EXISTS).fetchone() is None:
                        for statement in _SCHEMA:
                            values = {"genesis": GENESIS_HASH} if ":genesis" in statement else {}
                            conn.execute(statement, values)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _SQLiteSnapshot:
    def __init__(self, log: SQLiteAuditLog, conn: sqlite3.Connection) -> None:
        self._log = log
        self._conn = conn

    async def head(self) -> AuditHead:
        return await self._log._call("verify", lambda: _read_head(self._conn))

    async def page(self, after_seq: int, limit: int) -> list[AuditRecord]:
        return await self._log._call("verify", lambda: _read_page(self._conn, after_seq, limit))

    async def seq_of(self, digest: str) -> int | None:
        def find() -> int | None:
            row = self._conn.execute("SELECT seq FROM audit_log WHERE hash = ?", (digest,))
            found = row.fetchone()
            return None if found is None else int(found[0])

        return await self._log._call("verify", find)


def _read_head(conn: sqlite3.Connection) -> AuditHead:
    row = conn.execute(_HEAD).fetchone()
    if row is None:  # someone deleted the head row: an empty log would claim to be intact
        return AuditHead(-1, "")
    return AuditHead(int(row[0]), str(row[1]))


def _read_page(conn: sqlite3.Connection, after_seq: int, limit: int) -> list[AuditRecord]:
    return [record_of(row) for row in conn.execute(_SELECT, (after_seq, limit)).fetchall()]


class SQLiteAuditLog(AuditLog):
    """An :class:`keel.audit.AuditLog` in a SQLite file, usually the one Keel's
    :class:`keel.stores.SQLiteStore` uses (its tables are created if missing).

    Args:
        path: The database file (created if missing).
        clock: Gives ``at`` of new records (``time.time`` by default).
        busy_timeout_s: How long an append waits for another connection's write lock.
        page_size: How many records :meth:`verify` reads at a time.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] | None = None,
        busy_timeout_s: float = 5.0,
        page_size: int = 1000,
    ) -> None:
        super().__init__(clock=clock, page_size=page_size)
        if not busy_timeout_s >= 0:
            raise ConfigurationError(
                f"busy_timeout_s must be 0 or more seconds, got {busy_timeout_s!r}; the "
                "default is 5"
            )
        self._path = Path(path)
        self._writer = _Connection(self._path, busy_timeout_s)
        self._reader = _Connection(self._path, busy_timeout_s)
        self._read_lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def __repr__(self) -> str:
        return f"SQLiteAuditLog('{self._path}')"

    async def _call(self, action: str, work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except sqlite3.Error as exc:
            raise StoreError(
                f"the audit log in '{self._path}' could not {action}: {exc}; check the file "
                "is a writable SQLite database and that no other process holds its write lock"
            ) from exc

    async def _write(self, entries: list[AuditEntry], at: float) -> list[AuditRecord]:
        def write() -> list[AuditRecord]:
            conn = self._writer.get()
            with _immediate(conn):
                head = _read_head(conn)
                if head.seq < 0:
                    raise StoreError(
                        f"the audit log's head row in '{self._path}' is missing: the log was "
                        "tampered with; run keel audit verify"
                    )
                made = chain(head, entries, at)
                conn.executemany(_INSERT, [row_of(record) for record in made])
                conn.execute(
                    "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1",
                    (made[-1].seq, made[-1].hash),
                )
            return made

        return await self._call("append", write)

    async def _page(self, after_seq: int, limit: int) -> list[AuditRecord]:
        async with self._read_lock:
            return await self._call(
                "read", lambda: _read_page(self._reader.get(), after_seq, limit)
            )

    async def _head(self) -> AuditHead:
        async with self._read_lock:
            return await self._call("read", lambda: _read_head(self._reader.get()))

    def _snapshot(self) -> AbstractAsyncContextManager[Snapshot]:
        return self._view()

    @asynccontextmanager
    async def _view(self) -> AsyncIterator[Snapshot]:
        async with self._read_lock:
            # One read transaction: in WAL mode it sees the database as of its first read,
            # whatever is appended meanwhile.
            conn = await self._call("verify", self._reader.get)
            await self._call("verify", lambda: conn.execute("BEGIN"))
            try:
                yield _SQLiteSnapshot(self, conn)
            finally:
                await self._call("verify", lambda: conn.execute("COMMIT"))

    async def _close(self) -> None:
        async with self._read_lock:
            await asyncio.to_thread(self._writer.close)
            await asyncio.to_thread(self._reader.close)

"""The SQLite journal store: one file, WAL mode, durable before ``append`` returns.

Why the statements run inline
-----------------------------
Keel's budget is at most 500 µs of overhead per agent step with the journal durable on disk, and
a step makes two appends. On the reference machine one ``synchronous=FULL`` WAL commit costs
about 150 µs when run on the calling thread, but about 290 µs when handed to a worker thread
(``asyncio.to_thread``, or aiosqlite's thread): the handoff alone costs 100-140 µs. Two appends
through a thread would spend most of the budget on handoffs. So every ``async def`` method here
runs its SQL directly on the event loop's thread, and a ``threading.Lock`` guards the one
connection (opened with ``check_same_thread=False``) so the store can still be shared by threads.

The price is that a call blocks the event loop for as long as SQLite takes: normally one fsync,
but up to ``busy_timeout_s`` when another process holds the write lock. That is the right trade
for an embedded, one-file deployment; many concurrent writers belong on PostgreSQL.

Transactions are explicit (``isolation_level=None``). ``append`` opens ``BEGIN IMMEDIATE``,
which takes the write lock before anything is read: a second writer, in this or another process,
waits on the busy timeout. (A deferred transaction that reads first and writes later cannot wait:
if another connection committed in between, SQLite fails it at once with ``SQLITE_BUSY``.)
The journal's position is ``runs.last_seq``, written in the same transaction as the events. A
new run's summary is inserted with ``ON CONFLICT (run_id) DO NOTHING``; an existing run's is
updated ``WHERE last_seq = expected_seq``. When either touches no row, another writer got there
first, and the store raises :class:`keel.errors.JournalConflictError` before writing anything
else. That makes the conflict check part of the write itself, with no read-then-write gap, which
is also what keeps it correct under PostgreSQL's READ COMMITTED. Events go in with one
``executemany``, and every statement is a module constant, so sqlite3's statement cache prepares
each of them once.

The summary's indexed columns (``thread_id``, ``status``, ``created_at``) are updated by a
separate statement, and only when they changed: SQLite rewrites an index's entry whenever an
UPDATE sets one of its columns, changed or not, and updating them on every append wrote three
more WAL pages (4 KiB each; about 8 instead of 5 per append) to every commit.

Measured cost of one ``append`` of a 3-event tool step (model answer, tool call started and
finished), on the reference machine (ext4 on a virtual disk, SQLite 3.40, median of 1,500):
about 250 µs with ``synchronous="full"`` (a bare one-row FULL commit measures 160-270 µs there:
the fsync is nearly all of it) and about 60 µs with ``"normal"``; encoding the three events
is about 9 µs of either.

Durability
----------
The journal is in WAL mode. ``synchronous="full"`` (the default) fsyncs the WAL on every commit:
a returned ``append`` survives a power loss or OS crash. ``synchronous="normal"`` skips that
fsync (the WAL is synced at checkpoints): a returned ``append`` survives the process crashing,
but the last commits can be lost on power loss or an OS crash. The database itself stays
consistent in both modes.

Portability
-----------
The SQL is standard where a standard form exists (``INSERT ... ON CONFLICT (run_id) DO
NOTHING``, a conditional ``UPDATE`` and its row count, ``COALESCE``, ``?`` placeholders that a
PostgreSQL driver spells ``%s`` or ``$n``), and all data statements are gathered below so that a
PostgreSQL dialect can follow them one by one; only ``BEGIN IMMEDIATE`` and the DDL in
:mod:`keel.stores._sqlite_schema` are SQLite's own. Payloads are JSON text from
:mod:`keel.core.codec`, validated on the way back; nothing is pickled.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import ValidationError

from keel.core.codec import decode_event, decode_message, encode_event, encode_message
from keel.core.events import Event, RunStatus
from keel.core.messages import Message
from keel.errors import JournalConflictError, RunNotFoundError, StoreError
from keel.ports import RunRecord
from keel.stores._common import check_append, check_limit, closed_error
from keel.stores._sqlite_schema import CREATE_MIGRATIONS_TABLE, LATEST_VERSION, MIGRATIONS

__all__ = ["SQLiteStore"]

# The column order of _INSERT_RUN and _SELECT_RUNS, which _run_row and _run_record follow.
_RUN_COLUMNS = (
    "run_id",
    "thread_id",
    "agent",
    "model",
    "status",
    "created_at",
    "updated_at",
    "input",
    "steps",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "output_preview",
    "reason_code",
    "reason",
    "last_seq",
)

# --- data statements (the ones a PostgreSQL dialect translates) ---------------------------
# Spelled out in full, not assembled, so that each one can be read, grepped and ported as is.

_BEGIN_WRITE = "BEGIN IMMEDIATE"  # PostgreSQL: BEGIN (the conditional UPDATE locks the run row)
_COMMIT = "COMMIT"
_ROLLBACK = "ROLLBACK"

# A new run (expected_seq == 0) inserts its summary; an existing one advances it only from the
# position the writer expects. Either affects no row if another writer got there first, which is
# how a conflict is detected: no read-then-write race, and the same statements are correct under
# PostgreSQL's READ COMMITTED (the UPDATE waits for the row lock, then re-checks last_seq).
_INSERT_RUN = """
INSERT INTO runs (
    run_id, thread_id, agent, model, status, created_at, updated_at, input, steps, tool_calls,
    input_tokens, output_tokens, cost_usd, output_preview, reason_code, reason, last_seq
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id) DO NOTHING
"""
_ADVANCE_RUN = """
UPDATE runs SET
    agent = ?, model = ?, updated_at = ?, input = ?, steps = ?, tool_calls = ?,
    input_tokens = ?, output_tokens = ?, cost_usd = ?, output_preview = ?, reason_code = ?,
    reason = ?, last_seq = ?
WHERE run_id = ? AND last_seq = ?
"""
# The indexed columns are set apart, and only when they differ: SQLite rewrites the entries of
# every index whose column an UPDATE sets, changed or not, and that cost three more WAL pages
# (about 12 KiB) on every durable append.
_UPDATE_RUN_KEYS = """
UPDATE runs SET thread_id = ?, status = ?, created_at = ?
WHERE run_id = ? AND (thread_id <> ? OR status <> ? OR created_at <> ?)
"""
_SELECT_LAST_SEQ = "SELECT last_seq FROM runs WHERE run_id = ?"
_INSERT_EVENT = "INSERT INTO events (run_id, seq, type, at, body) VALUES (?, ?, ?, ?, ?)"
# MAX + 1 is safe here because BEGIN IMMEDIATE serialises all writers. Under PostgreSQL two runs
# of one thread could read the same MAX: lock the thread first (pg_advisory_xact_lock) or retry
# on the primary key's unique violation.
_SELECT_THREAD_LAST_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM thread_messages WHERE thread_id = ?"
_INSERT_THREAD_MESSAGE = (
    "INSERT INTO thread_messages (thread_id, seq, run_id, body) VALUES (?, ?, ?, ?)"
)

_SELECT_EVENTS = "SELECT seq, body FROM events WHERE run_id = ? ORDER BY seq"
_SELECT_RUNS = """
SELECT
    run_id, thread_id, agent, model, status, created_at, updated_at, input, steps, tool_calls,
    input_tokens, output_tokens, cost_usd, output_preview, reason_code, reason, last_seq
FROM runs
"""
_SELECT_RUN = _SELECT_RUNS + "WHERE run_id = ?"
# One statement per filter combination rather than "(? IS NULL OR ...)", so that each can use
# the index that matches its filter.
_LIST_RUNS: dict[tuple[bool, bool], str] = {
    (False, False): _SELECT_RUNS + "ORDER BY created_at DESC, run_id DESC LIMIT ?",
    (True, False): _SELECT_RUNS
    + "WHERE thread_id = ? ORDER BY created_at DESC, run_id DESC LIMIT ?",
    (False, True): _SELECT_RUNS + "WHERE status = ? ORDER BY created_at DESC, run_id DESC LIMIT ?",
    (True, True): _SELECT_RUNS
    + "WHERE thread_id = ? AND status = ? ORDER BY created_at DESC, run_id DESC LIMIT ?",
}
_SELECT_THREAD_MESSAGES = "SELECT seq, body FROM thread_messages WHERE thread_id = ? ORDER BY seq"

# --- schema bookkeeping -------------------------------------------------------------------

_SELECT_SCHEMA_VERSION = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
_INSERT_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"

_SQLITE_NOTADB = 26  # "file is not a database"
_SQLITE_CORRUPT = 11


class SQLiteStore:
    """A :class:`keel.ports.Store` in one SQLite file.

    Args:
        path: The database file; parent directories are created. ``":memory:"`` keeps the
            database in this connection's memory (gone on ``close``).
        synchronous: ``"full"`` (default) makes each append durable against power loss;
            ``"normal"`` only against the process crashing, and commits faster.
        busy_timeout_s: How long a write waits for another connection's write lock before
            failing with :class:`keel.errors.StoreError`.

    The file is opened, and its schema migrated, on first use. Errors from SQLite are raised
    as :class:`keel.errors.StoreError` with the path and the operation, the cause chained.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "keel.db",
        *,
        synchronous: Literal["full", "normal"] = "full",
        busy_timeout_s: float = 5.0,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        if busy_timeout_s < 0:
            raise ValueError(f"busy_timeout_s must be 0 or more, got {busy_timeout_s}")
        self._path = os.fspath(path)
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @property
    def path(self) -> str:
        """The database file this store uses."""
        return self._path

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r}, synchronous={self._synchronous!r})"

    async def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int,
        record: RunRecord,
        thread_messages: Sequence[Message] = (),
    ) -> int:
        """Append ``events`` after event ``expected_seq``, upsert ``record``; return last seq.

        One transaction: the events (seq ``expected_seq + 1`` on), the run's summary (stored
        with ``last_seq`` set to the new last seq) and ``thread_messages`` (appended to the
        thread ``record.thread_id``) are all written, or none is. Raises
        :class:`keel.errors.JournalConflictError` if the journal does not hold exactly
        ``expected_seq`` events.
        """
        check_append(run_id, events, expected_seq, record)
        # Encode before taking the lock: it is pure CPU work, and an event that cannot be
        # encoded then fails before the transaction starts.
        event_rows = [
            (run_id, seq, event.type, event.at, encode_event(event).decode())
            for seq, event in enumerate(events, expected_seq + 1)
        ]
        last_seq = expected_seq + len(event_rows)
        message_bodies = [encode_message(message).decode() for message in thread_messages]
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(_BEGIN_WRITE)
                try:
                    if expected_seq == 0:
                        written = conn.execute(_INSERT_RUN, _run_row(record, last_seq)).rowcount
                    else:
                        written = conn.execute(
                            _ADVANCE_RUN, _advance_row(record, last_seq, expected_seq)
                        ).rowcount
                    if written != 1:
                        found = conn.execute(_SELECT_LAST_SEQ, (run_id,)).fetchone()
                        actual = 0 if found is None else found[0]
                        raise JournalConflictError(run_id, expected=expected_seq, actual=actual)
                    if expected_seq:
                        conn.execute(_UPDATE_RUN_KEYS, _keys_row(record))
                    conn.executemany(_INSERT_EVENT, event_rows)
                    if message_bodies:
                        thread_id = record.thread_id
                        (base,) = conn.execute(_SELECT_THREAD_LAST_SEQ, (thread_id,)).fetchone()
                        conn.executemany(
                            _INSERT_THREAD_MESSAGE,
                            [
                                (thread_id, seq, run_id, body)
                                for seq, body in enumerate(message_bodies, base + 1)
                            ],
                        )
                    conn.execute(_COMMIT)
                except BaseException:
                    _rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise self._error(f"append to run '{run_id}'", exc) from exc
        return last_seq

    async def load(self, run_id: str) -> list[Event]:
        """All events of a run, in order; raises :class:`keel.errors.RunNotFoundError`."""
        rows = self._fetchall(f"load run '{run_id}'", _SELECT_EVENTS, (run_id,))
        if not rows:
            raise RunNotFoundError(run_id)
        events: list[Event] = []
        for seq, body in rows:
            try:
                events.append(decode_event(body))
            except ValidationError as exc:
                raise StoreError(
                    f"event {seq} of run '{run_id}' in '{self._path}' is not a valid Keel "
                    f"event ({exc.error_count()} errors); the file was edited or corrupted"
                ) from exc
        return events

    async def get_run(self, run_id: str) -> RunRecord:
        """The latest summary of a run; raises :class:`keel.errors.RunNotFoundError`."""
        rows = self._fetchall(f"read run '{run_id}'", _SELECT_RUN, (run_id,))
        if not rows:
            raise RunNotFoundError(run_id)
        return _run_record(rows[0])

    async def list_runs(
        self,
        *,
        thread_id: str | None = None,
        status: RunStatus | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Runs newest first (``created_at``, then ``run_id``, descending), optionally filtered."""
        check_limit(limit)
        params: list[Any] = [value for value in (thread_id, status) if value is not None]
        params.append(limit)
        statement = _LIST_RUNS[thread_id is not None, status is not None]
        rows = self._fetchall("list runs", statement, params)
        return [_run_record(row) for row in rows]

    async def thread_messages(self, thread_id: str) -> list[Message]:
        """The messages appended to a thread across its runs, in order; ``[]`` if none."""
        rows = self._fetchall(f"read thread '{thread_id}'", _SELECT_THREAD_MESSAGES, (thread_id,))
        messages: list[Message] = []
        for seq, body in rows:
            try:
                messages.append(decode_message(body))
            except ValidationError as exc:
                raise StoreError(
                    f"message {seq} of thread '{thread_id}' in '{self._path}' is not a valid "
                    f"Keel message ({exc.error_count()} errors); the file was edited or corrupted"
                ) from exc
        return messages

    async def close(self) -> None:
        """Close the connection. Closing twice is fine; any other use afterwards raises."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error as exc:
                    raise self._error("close", exc) from exc

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- internals ------------------------------------------------------------------------

    def _fetchall(
        self, action: str, statement: str, params: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connection()
            try:
                rows: list[tuple[Any, ...]] = conn.execute(statement, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(action, exc) from exc
        return rows

    def _connection(self) -> sqlite3.Connection:
        """The open connection, opening and migrating the database on first use.

        Called with ``self._lock`` held.
        """
        if self._conn is not None:
            return self._conn
        if self._closed:
            raise closed_error(repr(self))
        in_memory = self._path in (":memory:", "")
        if not in_memory:
            try:
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the directory for the Keel database '{self._path}': {exc}; "
                    "choose a path in a writable directory"
                ) from exc
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        try:
            self._configure(conn)
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        try:
            # The first statement that reads the file: a file that is not a database fails here.
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout_s * 1000)}")
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorcode == _SQLITE_NOTADB:
                raise StoreError(
                    f"'{self._path}' is not a Keel SQLite database ({exc}); point SQLiteStore "
                    "at another path, or move that file away if it is not needed"
                ) from exc
            if exc.sqlite_errorcode == _SQLITE_CORRUPT:
                raise StoreError(
                    f"the Keel SQLite database '{self._path}' is damaged ({exc}); restore it "
                    "from a backup, or point SQLiteStore at another path"
                ) from exc
            raise self._error("open", exc) from exc

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply the migrations this database lacks, in one transaction."""
        try:
            conn.execute(_BEGIN_WRITE)
            try:
                conn.execute(CREATE_MIGRATIONS_TABLE)
                (version,) = conn.execute(_SELECT_SCHEMA_VERSION).fetchone()
                if version > LATEST_VERSION:
                    raise StoreError(
                        f"'{self._path}' was written by a newer Keel (schema {version}; this "
                        f"Keel knows up to schema {LATEST_VERSION}); upgrade keel"
                    )
                for migration in MIGRATIONS:
                    if migration.version <= version:
                        continue
                    for statement in migration.statements:
                        conn.execute(statement)
                    conn.execute(
                        _INSERT_MIGRATION, (migration.version, migration.name, time.time())
                    )
                conn.execute(_COMMIT)
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            raise self._error("schema migration", exc) from exc

    def _error(self, action: str, exc: sqlite3.Error) -> StoreError:
        message = f"SQLite store '{self._path}': {action} failed: {exc}"
        if exc.sqlite_errorname in ("SQLITE_BUSY", "SQLITE_LOCKED"):
            message += (
                f"; another connection held the write lock for longer than busy_timeout_s="
                f"{self._busy_timeout_s:g}: raise it, or look for a stuck writer"
            )
        return StoreError(message)


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls back by itself on some errors; a second ROLLBACK would then fail and hide
    # the error that matters.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute(_ROLLBACK)


def _run_row(record: RunRecord, last_seq: int) -> tuple[Any, ...]:
    return (
        record.run_id,
        record.thread_id,
        record.agent,
        record.model,
        record.status,
        record.created_at,
        record.updated_at,
        record.input,
        record.steps,
        record.tool_calls,
        record.input_tokens,
        record.output_tokens,
        record.cost_usd,
        record.output_preview,
        record.reason_code,
        record.reason,
        last_seq,
    )


def _advance_row(record: RunRecord, last_seq: int, expected_seq: int) -> tuple[Any, ...]:
    return (
        record.agent,
        record.model,
        record.updated_at,
        record.input,
        record.steps,
        record.tool_calls,
        record.input_tokens,
        record.output_tokens,
        record.cost_usd,
        record.output_preview,
        record.reason_code,
        record.reason,
        last_seq,
        record.run_id,
        expected_seq,
    )


def _keys_row(record: RunRecord) -> tuple[Any, ...]:
    keys = (record.thread_id, record.status, record.created_at)
    return (*keys, record.run_id, *keys)


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(**dict(zip(_RUN_COLUMNS, row, strict=True)))

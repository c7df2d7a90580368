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

Transactions are explicit (``isolation_level=None``). Every write opens ``BEGIN IMMEDIATE``,
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

Leases
------
A run's lease is three columns of its ``runs`` row (owner, fencing token, expiry; migration 2),
so the lease check folds into the same conditional UPDATE as the position check: an append under
a lease adds ``AND lease_token = ? AND lease_owner = ?``, one without adds ``AND (lease_owner IS
NULL OR lease_expires_at <= now)``. The hot path keeps its statement count (an UPDATE, the
events' INSERT, COMMIT); only when the UPDATE touches no row does the store read the row, in the
same transaction, to say which rule refused it (:func:`keel.stores._common.refusal`: the lease
first, then the position). The lease columns are in no index, so setting them costs no index
page. Lease times come from the store's :class:`keel.ports.Clock`, so a test can expire a lease
without sleeping; all processes on one file share the machine's clock.

Thread messages take their numbers from ``threads.last_seq`` in one upsert with ``RETURNING``,
not from ``MAX(seq) + 1``: numbers of deleted messages are never handed out again, which keeps
a run's recorded "my history ends at N" meaning the same after retention deletes old runs.

Measured cost of one ``append`` of a 3-event tool step (model answer, tool call started and
finished), on the reference machine (ext4 on a virtual disk, SQLite 3.40, median of 1,500):
about 250 µs with ``synchronous="full"`` (a bare one-row FULL commit measures 160-270 µs there:
the fsync is nearly all of it) and about 60 µs with ``"normal"``; encoding the three events
is about 9 µs of either. With leases (schema 2), measured the same way beside the schema-1
code in one script (three rounds of 1,000 appends each, medians): ``"full"`` 215-285 µs with or
without a lease, the same as the old code's 220-280 µs (a bare one-row FULL commit: 220 µs),
and ``"normal"`` 50-95 µs for both; an append still writes 4.2 WAL pages, lease or not.

Durability
----------
The journal is in WAL mode. ``synchronous="full"`` (the default) fsyncs the WAL on every commit:
a returned ``append`` survives a power loss or OS crash. ``synchronous="normal"`` skips that
fsync (the WAL is synced at checkpoints): a returned ``append`` survives the process crashing,
but the last commits can be lost on power loss or an OS crash. The database itself stays
consistent in both modes.

Schema
------
Numbered, forward-only migrations (:mod:`keel.stores._sqlite_schema`), applied in one
transaction when the store is first used, or explicitly with :meth:`SQLiteStore.upgrade`
(``keel db upgrade``) when it is opened with ``auto_migrate=False``.

Portability
-----------
The SQL is standard where a standard form exists (``INSERT ... ON CONFLICT``, a conditional
``UPDATE`` and its row count, ``RETURNING``, ``COALESCE``), and all data statements are gathered
below; :mod:`keel.stores._postgres` follows them one by one. Only ``BEGIN IMMEDIATE``,
``json_each`` and the DDL in :mod:`keel.stores._sqlite_schema` are SQLite's own. Payloads are
JSON text from :mod:`keel._core.codec`, validated on the way back; nothing is pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from keel._core.codec import encode_event, encode_message
from keel._core.events import Event, RunStatus
from keel._core.messages import Message
from keel.errors import (
    JournalConflictError,
    RunLeasedError,
    RunNotFoundError,
    StoreError,
    ThreadBusyError,
    ThreadChangedError,
)
from keel.ports import Clock, Lease, RunRecord, SystemClock, ThreadHistory
from keel.stores._common import (
    LeaseState,
    check_append,
    check_limit,
    check_ttl,
    closed_error,
    decode_events,
    decode_thread_history,
    granted_token,
    lease_lost,
    refusal,
    started_after,
)
from keel.stores._sqlite_schema import CREATE_MIGRATIONS_TABLE, LATEST_VERSION, MIGRATIONS

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")

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

# Larger than any sequence number: "no upper bound" for thread_history.
_MAX_SEQ = 2**63 - 1

# --- data statements (the ones a PostgreSQL dialect translates) ---------------------------
# Spelled out in full, not assembled, so that each one can be read, grepped and ported as is.

_BEGIN_WRITE = "BEGIN IMMEDIATE"  # PostgreSQL: BEGIN (the conditional UPDATE locks the run row)
_COMMIT = "COMMIT"
_ROLLBACK = "ROLLBACK"

# A new run (expected_seq == 0) inserts its summary; an existing one advances it only from the
# position the writer expects, and only if the lease allows it. Either affects no row if another
# writer got there first or the lease refuses, which is how a refusal is detected: no
# read-then-write race, and the same statements are correct under PostgreSQL's READ COMMITTED
# (the UPDATE waits for the row lock, then re-checks its WHERE clause).
_INSERT_RUN = """
INSERT INTO runs (
    run_id, thread_id, agent, model, status, created_at, updated_at, input, steps, tool_calls,
    input_tokens, output_tokens, cost_usd, output_preview, reason_code, reason, last_seq
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id) DO NOTHING
"""
# start_run: the same, leased to its owner with the first fencing token.
_INSERT_LEASED_RUN = """
INSERT INTO runs (
    run_id, thread_id, agent, model, status, created_at, updated_at, input, steps, tool_calls,
    input_tokens, output_tokens, cost_usd, output_preview, reason_code, reason, last_seq,
    lease_owner, lease_token, lease_expires_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (run_id) DO NOTHING
"""
_ADVANCE_RUN_SET = """
UPDATE runs SET
    agent = ?, model = ?, updated_at = ?, input = ?, steps = ?, tool_calls = ?,
    input_tokens = ?, output_tokens = ?, cost_usd = ?, output_preview = ?, reason_code = ?,
    reason = ?, last_seq = ?
WHERE run_id = ? AND last_seq = ?
"""
# Without a lease: nobody may hold an unexpired one (the last parameter is now).
_ADVANCE_RUN = _ADVANCE_RUN_SET + "AND (lease_owner IS NULL OR lease_expires_at <= ?)"
# Under a lease: it must still be the current one (expired or not: nobody took over).
_ADVANCE_LEASED_RUN = _ADVANCE_RUN_SET + "AND lease_token = ? AND lease_owner = ?"
# The indexed columns are set apart, and only when they differ: SQLite rewrites the entries of
# every index whose column an UPDATE sets, changed or not, and that cost three more WAL pages
# (about 12 KiB) on every durable append.
_UPDATE_RUN_KEYS = """
UPDATE runs SET thread_id = ?, status = ?, created_at = ?
WHERE run_id = ? AND (thread_id <> ? OR status <> ? OR created_at <> ?)
"""
_SELECT_RUN_STATE = (
    "SELECT last_seq, lease_owner, lease_token, lease_expires_at FROM runs WHERE run_id = ?"
)
_INSERT_EVENT = "INSERT INTO events (run_id, seq, type, at, body) VALUES (?, ?, ?, ?, ?)"
# Reserve the thread's next message numbers: the counter only grows, so numbers of deleted
# messages are never reused. The upsert reads and writes in one statement.
_RESERVE_THREAD_SEQS = """
INSERT INTO threads (thread_id, last_seq) VALUES (?, ?)
ON CONFLICT (thread_id) DO UPDATE SET last_seq = last_seq + excluded.last_seq
RETURNING last_seq
"""
_INSERT_THREAD_MESSAGE = (
    "INSERT INTO thread_messages (thread_id, seq, run_id, body) VALUES (?, ?, ?, ?)"
)

_UPDATE_LEASE = """
UPDATE runs SET lease_owner = ?, lease_token = ?, lease_expires_at = ? WHERE run_id = ?
"""
_RENEW_LEASE = """
UPDATE runs SET lease_expires_at = ? WHERE run_id = ? AND lease_token = ? AND lease_owner = ?
"""
_RELEASE_LEASE = """
UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
WHERE run_id = ? AND lease_token = ? AND lease_owner = ?
"""

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
# Reads runs_by_status in order: running runs are few, and the oldest come first.
_RECOVERABLE_RUNS = (
    _SELECT_RUNS
    + "WHERE status = 'running' AND (lease_owner IS NULL OR lease_expires_at <= ?) "
    + "ORDER BY created_at, run_id LIMIT ?"
)
# Both read the partial index runs_running_by_thread: one entry, however long the thread.
_ACTIVE_RUN = (
    _SELECT_RUNS
    + "WHERE thread_id = ? AND status = 'running' ORDER BY created_at DESC, run_id DESC LIMIT 1"
)
_THREAD_LAST_SEQ = "SELECT last_seq FROM threads WHERE thread_id = ?"
_OTHER_ACTIVE_RUN = """
SELECT run_id FROM runs WHERE thread_id = ? AND status = 'running' AND run_id <> ?
ORDER BY created_at DESC, run_id DESC LIMIT 1
"""
# One row per message up to the bound, or one row of NULLs for a thread whose messages are all
# deleted; no row for an unknown thread. One statement, so the counter and the messages are
# read from the same snapshot.
_THREAD_HISTORY = """
SELECT t.last_seq, m.seq, m.body
FROM threads AS t LEFT JOIN thread_messages AS m ON m.thread_id = t.thread_id AND m.seq <= ?
WHERE t.thread_id = ?
ORDER BY m.seq
"""

# Deletion takes the run ids as one JSON array parameter: any number of them, one statement.
_LIVE_LEASE_AMONG = """
SELECT run_id, lease_owner, lease_expires_at FROM runs
WHERE run_id IN (SELECT value FROM json_each(?)) AND lease_owner IS NOT NULL
    AND lease_expires_at > ?
ORDER BY run_id LIMIT 1
"""
_DELETE_THREAD_MESSAGES_OF_RUNS = (
    "DELETE FROM thread_messages WHERE run_id IN (SELECT value FROM json_each(?))"
)
_DELETE_EVENTS_OF_RUNS = "DELETE FROM events WHERE run_id IN (SELECT value FROM json_each(?))"
_DELETE_RUNS = "DELETE FROM runs WHERE run_id IN (SELECT value FROM json_each(?))"
_OLD_RUNS = """
SELECT run_id FROM runs
WHERE created_at < ? AND status <> 'running' AND (lease_owner IS NULL OR lease_expires_at <= ?)
"""
_THREAD_RUNS = "SELECT run_id FROM runs WHERE thread_id = ?"
_DELETE_THREAD_MESSAGES = "DELETE FROM thread_messages WHERE thread_id = ?"

# --- schema bookkeeping -------------------------------------------------------------------

_HAS_MIGRATIONS_TABLE = (
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
)
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
        clock: The clock lease times are measured by; the system clock by default.
        auto_migrate: Bring the schema up to date when the store is first used (default).
            With ``False``, a database that lacks migrations is refused with a
            :class:`keel.errors.StoreError` until :meth:`upgrade` (``keel db upgrade``) runs.

    The file is opened, and its schema checked, on first use. Errors from SQLite are raised as
    :class:`keel.errors.StoreError` with the path and the operation, the cause chained.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "keel.db",
        *,
        synchronous: Literal["full", "normal"] = "full",
        busy_timeout_s: float = 5.0,
        clock: Clock | None = None,
        auto_migrate: bool = True,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        if busy_timeout_s < 0:
            raise ValueError(f"busy_timeout_s must be 0 or more, got {busy_timeout_s}")
        self._path = os.fspath(path)
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._auto_migrate = auto_migrate
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._schema_ready = False
        self._closed = False

    @property
    def path(self) -> str:
        """The database file this store uses."""
        return self._path

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r}, synchronous={self._synchronous!r})"

    async def upgrade(self) -> list[int]:
        """Apply the migrations this database lacks; return their versions (``[]``: none).

        Safe to run while other processes use the file: the migration holds the write lock.
        """
        with self._lock:
            conn = self._open()
            applied = self._migrate(conn)
            self._schema_ready = True
            return applied

    # --- writes ---------------------------------------------------------------------------

    async def start_run(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        record: RunRecord,
        owner: str,
        ttl_s: float,
        exclusive: bool = False,
    ) -> Lease:
        """Create a run from its first events, leased to ``owner`` (fencing token 1).

        One transaction. With ``exclusive``, raises :class:`keel.errors.ThreadBusyError` if
        another run of the thread is ``running`` (``BEGIN IMMEDIATE`` makes the check and the
        insert one step). Raises :class:`keel.errors.JournalConflictError` if the run exists.
        """
        check_append(run_id, events, 0, record)
        check_ttl(ttl_s)
        event_rows = _event_rows(run_id, events, 0)
        last_seq = len(event_rows)

        def write(conn: sqlite3.Connection) -> Lease:
            if exclusive:
                active = conn.execute(_OTHER_ACTIVE_RUN, (record.thread_id, run_id)).fetchone()
                if active is not None:
                    raise ThreadBusyError(record.thread_id, active_run_id=active[0])
                expected = started_after(events)
                if expected is not None:
                    found = conn.execute(_THREAD_LAST_SEQ, (record.thread_id,)).fetchone()
                    actual = 0 if found is None else found[0]
                    if actual != expected:
                        raise ThreadChangedError(record.thread_id, expected=expected, actual=actual)
            expires_at = self._clock.now() + ttl_s
            row = (*_run_row(record, last_seq), owner, expires_at)
            if conn.execute(_INSERT_LEASED_RUN, row).rowcount != 1:
                state = _state(conn, run_id)
                actual = 0 if state is None else state.last_seq
                raise JournalConflictError(run_id, expected=0, actual=actual)
            conn.executemany(_INSERT_EVENT, event_rows)
            return Lease(run_id=run_id, owner=owner, token=1, expires_at=expires_at)

        return self._write(f"start run '{run_id}'", write)

    async def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int,
        record: RunRecord,
        thread_messages: Sequence[Message] = (),
        lease: Lease | None = None,
    ) -> int:
        """Append ``events`` after event ``expected_seq``, upsert ``record``; return last seq.

        One transaction: the events (seq ``expected_seq + 1`` on), the run's summary (stored
        with ``last_seq`` set to the new last seq) and ``thread_messages`` (appended to the
        thread ``record.thread_id``) are all written, or none is. Raises, writing nothing,
        :class:`keel.errors.LeaseLostError` if ``lease`` is not the run's current lease,
        :class:`keel.errors.RunLeasedError` if there is no ``lease`` and another process holds
        an unexpired one, and :class:`keel.errors.JournalConflictError` if the journal does not
        hold exactly ``expected_seq`` events.
        """
        check_append(run_id, events, expected_seq, record, lease)
        # Encode before taking the lock: it is pure CPU work, and an event that cannot be
        # encoded then fails before the transaction starts.
        event_rows = _event_rows(run_id, events, expected_seq)
        last_seq = expected_seq + len(event_rows)
        message_bodies = [encode_message(message).decode() for message in thread_messages]
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(_BEGIN_WRITE)
                try:
                    if expected_seq == 0:
                        # A new run has no lease yet, so no lease can be current for it.
                        written = lease is None and (
                            conn.execute(_INSERT_RUN, _run_row(record, last_seq)).rowcount == 1
                        )
                    else:
                        advance = _advance_row(record, last_seq, expected_seq)
                        if lease is None:
                            cursor = conn.execute(_ADVANCE_RUN, (*advance, self._clock.now()))
                        else:
                            cursor = conn.execute(
                                _ADVANCE_LEASED_RUN, (*advance, lease.token, lease.owner)
                            )
                        written = cursor.rowcount == 1
                    if not written:
                        raise self._refusal(conn, run_id, expected_seq, lease)
                    if expected_seq:
                        conn.execute(_UPDATE_RUN_KEYS, _keys_row(record))
                    conn.executemany(_INSERT_EVENT, event_rows)
                    if message_bodies:
                        thread_id = record.thread_id
                        (top,) = conn.execute(
                            _RESERVE_THREAD_SEQS, (thread_id, len(message_bodies))
                        ).fetchone()
                        conn.executemany(
                            _INSERT_THREAD_MESSAGE,
                            [
                                (thread_id, seq, run_id, body)
                                for seq, body in enumerate(
                                    message_bodies, top - len(message_bodies) + 1
                                )
                            ],
                        )
                    conn.execute(_COMMIT)
                except BaseException:
                    _rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise self._error(f"append to run '{run_id}'", exc) from exc
        return last_seq

    async def acquire_lease(
        self, run_id: str, *, owner: str, ttl_s: float, force: bool = False
    ) -> Lease:
        """Take the run's lease if it is free, expired or ``owner``'s own; ``force`` takes it
        from another owner. See :meth:`keel.ports.Store.acquire_lease`."""
        check_ttl(ttl_s)

        def write(conn: sqlite3.Connection) -> Lease:
            state = _state(conn, run_id)
            if state is None:
                raise RunNotFoundError(run_id)
            now = self._clock.now()
            token = granted_token(run_id, state, owner=owner, force=force, now=now)
            expires_at = now + ttl_s
            conn.execute(_UPDATE_LEASE, (owner, token, expires_at, run_id))
            return Lease(run_id=run_id, owner=owner, token=token, expires_at=expires_at)

        return self._write(f"acquire the lease on run '{run_id}'", write)

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease:
        """Extend ``lease`` to ``ttl_s`` from now; :class:`keel.errors.LeaseLostError` if it is
        no longer current."""
        check_ttl(ttl_s)

        def write(conn: sqlite3.Connection) -> Lease:
            expires_at = self._clock.now() + ttl_s
            params = (expires_at, lease.run_id, lease.token, lease.owner)
            if conn.execute(_RENEW_LEASE, params).rowcount != 1:
                raise lease_lost(lease, _state(conn, lease.run_id))
            return Lease(
                run_id=lease.run_id, owner=lease.owner, token=lease.token, expires_at=expires_at
            )

        return self._write(f"renew the lease on run '{lease.run_id}'", write)

    async def release_lease(self, lease: Lease) -> None:
        """Give ``lease`` up if it is still current; otherwise do nothing."""
        self._write(
            f"release the lease on run '{lease.run_id}'",
            lambda conn: conn.execute(_RELEASE_LEASE, (lease.run_id, lease.token, lease.owner)),
        )

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete runs with their events, leases and thread messages; return how many existed.

        Raises :class:`keel.errors.RunLeasedError`, deleting nothing, if one has a live lease.
        """
        ids = list(run_ids)
        return self._write("delete runs", lambda conn: self._delete(conn, ids))

    async def delete_runs_before(self, before: float) -> int:
        """Delete runs created before ``before``, except ``running`` or leased ones."""

        def write(conn: sqlite3.Connection) -> int:
            rows = conn.execute(_OLD_RUNS, (before, self._clock.now())).fetchall()
            return self._delete(conn, [run_id for (run_id,) in rows])

        return self._write("delete old runs", write)

    async def delete_thread(self, thread_id: str) -> int:
        """Delete the thread's messages and runs; return how many runs.

        Raises :class:`keel.errors.RunLeasedError`, deleting nothing, if a run has a live lease.
        The thread's message counter stays, so its numbers are never handed out again.
        """

        def write(conn: sqlite3.Connection) -> int:
            rows = conn.execute(_THREAD_RUNS, (thread_id,)).fetchall()
            deleted = self._delete(conn, [run_id for (run_id,) in rows])
            conn.execute(_DELETE_THREAD_MESSAGES, (thread_id,))
            # The counter (threads.last_seq) stays, so the numbers are never handed out again.
            return deleted

        return self._write(f"delete thread '{thread_id}'", write)

    # --- reads ----------------------------------------------------------------------------

    async def load(self, run_id: str) -> list[Event]:
        """All events of a run, in order; raises :class:`keel.errors.RunNotFoundError`."""
        rows = self._fetchall(f"load run '{run_id}'", _SELECT_EVENTS, (run_id,))
        return decode_events(rows, run_id, where=f"in '{self._path}'")

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

    async def recoverable_runs(self, *, limit: int = 100) -> list[RunRecord]:
        """Runs ``running`` with no unexpired lease, oldest first (``created_at``, ``run_id``)."""
        check_limit(limit)
        rows = self._fetchall(
            "list recoverable runs", _RECOVERABLE_RUNS, (self._clock.now(), limit)
        )
        return [_run_record(row) for row in rows]

    async def active_run(self, thread_id: str) -> RunRecord | None:
        """The newest run of the thread with status ``running``, or ``None``."""
        rows = self._fetchall(f"read thread '{thread_id}'", _ACTIVE_RUN, (thread_id,))
        return _run_record(rows[0]) if rows else None

    async def thread_history(self, thread_id: str, *, upto_seq: int | None = None) -> ThreadHistory:
        """The thread's messages up to ``upto_seq`` (all if ``None``) and its last seq."""
        bound = _MAX_SEQ if upto_seq is None else upto_seq
        rows = self._fetchall(f"read thread '{thread_id}'", _THREAD_HISTORY, (bound, thread_id))
        return decode_thread_history(rows, thread_id, where=f"in '{self._path}'")

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

    def _write(self, action: str, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction; roll back if it raises."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(_BEGIN_WRITE)
                try:
                    result = work(conn)
                    conn.execute(_COMMIT)
                except BaseException:
                    _rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise self._error(action, exc) from exc
        return result

    def _refusal(
        self, conn: sqlite3.Connection, run_id: str, expected_seq: int, lease: Lease | None
    ) -> StoreError:
        """Why an append's write touched no row, read in its own transaction."""
        error = refusal(
            run_id,
            expected_seq=expected_seq,
            lease=lease,
            state=_state(conn, run_id),
            now=self._clock.now(),
        )
        # BEGIN IMMEDIATE holds the write lock, so the row is what the write saw.
        return error or StoreError(f"append to run '{run_id}' wrote nothing, for no known reason")

    def _delete(self, conn: sqlite3.Connection, run_ids: list[str]) -> int:
        """Delete runs and what derives from them, after checking that none is leased."""
        if not run_ids:
            return 0
        ids = json.dumps(run_ids)
        leased = conn.execute(_LIVE_LEASE_AMONG, (ids, self._clock.now())).fetchone()
        if leased is not None:
            raise RunLeasedError(leased[0], owner=leased[1], expires_at=leased[2])
        # Children first: the foreign keys of events and thread_messages point at runs.
        conn.execute(_DELETE_THREAD_MESSAGES_OF_RUNS, (ids,))
        conn.execute(_DELETE_EVENTS_OF_RUNS, (ids,))
        deleted: int = conn.execute(_DELETE_RUNS, (ids,)).rowcount
        return deleted

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
        """The open connection, opening the file and checking (or migrating) its schema on
        first use. Called with ``self._lock`` held."""
        conn = self._open()
        if not self._schema_ready:
            if self._auto_migrate:
                self._migrate(conn)
            else:
                self._check_schema(conn)
            self._schema_ready = True
        return conn

    def _open(self) -> sqlite3.Connection:
        """The open connection, configured; its schema unchecked. Called with the lock held."""
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

    def _migrate(self, conn: sqlite3.Connection) -> list[int]:
        """Apply the migrations this database lacks, in one transaction; return their
        versions."""
        applied: list[int] = []
        try:
            conn.execute(_BEGIN_WRITE)
            try:
                conn.execute(CREATE_MIGRATIONS_TABLE)
                (version,) = conn.execute(_SELECT_SCHEMA_VERSION).fetchone()
                self._refuse_newer(version)
                for migration in MIGRATIONS:
                    if migration.version <= version:
                        continue
                    for statement in migration.statements:
                        conn.execute(statement)
                    conn.execute(
                        _INSERT_MIGRATION, (migration.version, migration.name, time.time())
                    )
                    applied.append(migration.version)
                conn.execute(_COMMIT)
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            raise self._error("schema migration", exc) from exc
        return applied

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """Refuse a database whose schema is not this Keel's (``auto_migrate=False``)."""
        try:
            (has_table,) = conn.execute(_HAS_MIGRATIONS_TABLE).fetchone()
            version = conn.execute(_SELECT_SCHEMA_VERSION).fetchone()[0] if has_table else 0
        except sqlite3.Error as exc:
            raise self._error("schema check", exc) from exc
        self._refuse_newer(version)
        if version < LATEST_VERSION:
            raise StoreError(
                f"the Keel database '{self._path}' has schema {version} and this Keel needs "
                f"schema {LATEST_VERSION}; run `keel db upgrade` (or open the store with "
                "auto_migrate=True)"
            )

    def _refuse_newer(self, version: int) -> None:
        if version > LATEST_VERSION:
            raise StoreError(
                f"'{self._path}' was written by a newer Keel (schema {version}; this "
                f"Keel knows up to schema {LATEST_VERSION}); upgrade keel"
            )

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


def _state(conn: sqlite3.Connection, run_id: str) -> LeaseState | None:
    row = conn.execute(_SELECT_RUN_STATE, (run_id,)).fetchone()
    return None if row is None else LeaseState(*row)


def _event_rows(
    run_id: str, events: Sequence[Event], expected_seq: int
) -> list[tuple[str, int, str, float, str]]:
    return [
        (run_id, seq, event.type, event.at, encode_event(event).decode())
        for seq, event in enumerate(events, expected_seq + 1)
    ]


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

"""The PostgreSQL journal store: many processes on many hosts share one database.

Install with ``pip install 'keel[postgres]'`` (psycopg 3 and its pool). The contract is the
one every store follows (:class:`keel.ports.Store`), and the SQL follows the SQLite store's
statement by statement (:mod:`keel.stores._sqlite`); this docstring says where PostgreSQL
differs, and why.

One round trip per append
-------------------------
An append is one SQL statement on an autocommit connection: the run's conditional UPDATE (or
INSERT for a new run) is a data-modifying CTE, and the events (and thread messages) are
inserted by further CTEs that select from it, from ``unnest`` over arrays of the encoded
events. If the UPDATE matches no row (wrong position, or the lease refuses), the INSERTs select
nothing and the statement writes nothing. The statement and its implicit commit are one round
trip; only a refused append reads the run's row once more to say why
(:func:`keel.stores._common.refusal`: the lease first, then the position). Thread messages take
their numbers from an ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` on the thread's
``threads`` row, which locks that row, so concurrent runs of one thread number their messages
in turn, and numbers are never reused after deletions.

Measured on the reference machine (2 cores, PostgreSQL 15 on the same host over loopback,
``fsync`` and ``synchronous_commit`` on; medians of 1,500, three runs): one ``append`` of a
3-event tool step takes 0.74-0.88 ms through the store, where a bare one-row INSERT commit in
the same script takes 0.31-0.38 ms and a ``SELECT 1`` round trip 0.09-0.17 ms. Keel's part is
about 0.45 ms of the 2 ms budget per step: encoding the events (25-30 µs), the server parsing
and planning the statement anew each time (about 190 µs: a prepared statement would save it,
but would break behind pgbouncer in transaction mode), and executing it (about 120 µs, its
foreign-key checks included). The event bodies are sent as binary arrays: psycopg's text
encoding of an array escapes each JSON body character by character, which cost 450 µs more.

Behind a connection pooler
--------------------------
pgbouncer in transaction mode hands each transaction to any server connection, so the store
keeps no session state: no server-side prepared statements (``prepare_threshold=None``), no
``SET search_path`` (every table is written ``schema.table``, the schema quoted as an
identifier), and only transaction-level advisory locks (``pg_advisory_xact_lock``), which
serialise schema migrations across processes and make ``start_run(exclusive=True)`` one atomic
step: the thread's lock is taken, then a new statement (with a fresh snapshot under READ
COMMITTED) looks for a running run, then the run is inserted, all in one transaction.

Lost connections and server restarts
------------------------------------
A call whose connection is dead (the server restarted, a pooler or a firewall closed it) or
drops mid-way has the pool test all its idle connections, replacing the dead ones, and is then
retried once on a fresh connection. The pool does not test each connection as it hands it out:
that would cost a round trip on every call, and psycopg_pool backs off exponentially between
failed checks, so after a restart a pool of five dead connections kept the first call waiting
15 s (measured); one failed attempt and a sweep costs a few milliseconds.

For reads, lease calls and deletions the retry is safe as it is (re-acquiring one's own lease
renews it; a deletion retried after it committed reports 0). An append (or ``start_run``)
whose connection dropped may or may not have committed: the retry then either succeeds (it had
not) or meets a :class:`keel.errors.JournalConflictError`, and the store reads the events after
``expected_seq`` and compares them, as stored JSON text, with what it was appending. Equal
means the first attempt committed, and the append returns as a success; anything else
re-raises the conflict. No append is lost or written twice.

Time
----
Lease times use the database's clock (``clock_timestamp()``), so processes on hosts whose
clocks disagree still agree on who holds a lease. A run's own times (``created_at`` ...) are
the caller's, as in every store.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from keel._core.codec import encode_event, encode_message
from keel._core.events import Event, RunStatus
from keel._core.messages import Message
from keel.errors import (
    JournalConflictError,
    MissingExtraError,
    RunLeasedError,
    RunNotFoundError,
    StoreError,
    ThreadBusyError,
    ThreadChangedError,
)
from keel.ports import Lease, RunRecord, ThreadHistory
from keel.stores._common import (
    LeaseState,
    check_append,
    check_limit,
    check_ttl,
    closed_error,
    decode_events,
    decode_thread_history,
    lease_lost,
    refusal,
    started_after,
)
from keel.stores._postgres_schema import LATEST_VERSION, MIGRATIONS

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    from keel.stores._postgres_sql import LOCK, RUN_COLUMNS, SCHEMA_EXISTS, Statements
except ImportError as exc:  # pragma: no cover - exercised by a test with psycopg hidden
    raise MissingExtraError(
        package="psycopg", extra="postgres", feature="The PostgreSQL store"
    ) from exc

__all__ = ["PostgresStore"]

_T = TypeVar("_T")
_Connection = psycopg.AsyncConnection[tuple[Any, ...]]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Larger than any sequence number: "no upper bound" for thread_history.
_MAX_SEQ = 2**63 - 1

# SQLSTATEs of a connection that the server ended: admin shutdown, crash, starting up.
_SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})


class _DisconnectedError(Exception):
    """A call lost its connection (or could not get one); ``cause`` is psycopg's error."""

    def __init__(self, cause: psycopg.Error) -> None:
        super().__init__(str(cause))
        self.cause = cause


class PostgresStore:
    """A :class:`keel.ports.Store` in a PostgreSQL database, shared by any number of
    processes.

    Args:
        url: A libpq connection string or URL, e.g.
            ``postgresql://keel:secret@db.internal:5432/keel``. It may point at a pooler
            such as pgbouncer in transaction mode.
        schema: The schema that holds Keel's tables (created if missing). Several stores with
            different schemas share one database without seeing each other's data.
        min_size: Connections the pool keeps open.
        max_size: The most connections the pool opens.
        auto_migrate: Bring the schema up to date on first use (default). With ``False``, a
            schema that lacks migrations is refused with :class:`keel.errors.StoreError` until
            :meth:`upgrade` (``keel db upgrade``) runs.
        connect_timeout_s: How long to wait for a new connection, or for a free one from the
            pool, before failing.
        reconnect_timeout_s: How long a call keeps retrying on fresh connections after its
            connection was lost (a server restart, a failover) before failing. An append that
            may have committed before the loss is checked, never written twice.

    Nothing connects until first use. The store belongs to the event loop that first uses it.
    Errors from PostgreSQL are raised as :class:`keel.errors.StoreError` naming the server
    (never the password) and the operation, the cause chained.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = "keel",
        min_size: int = 1,
        max_size: int = 10,
        auto_migrate: bool = True,
        connect_timeout_s: float = 10.0,
        reconnect_timeout_s: float = 15.0,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(
                f"schema must be a plain identifier (letters, digits and _, not starting with a "
                f"digit, at most 63 characters), got {schema!r}"
            )
        if min_size < 0 or max_size < max(min_size, 1):
            raise ValueError(
                f"need 0 <= min_size <= max_size and max_size >= 1, got min_size={min_size}, "
                f"max_size={max_size}"
            )
        if not connect_timeout_s > 0:
            raise ValueError(f"connect_timeout_s must be positive, got {connect_timeout_s}")
        if reconnect_timeout_s < 0:
            raise ValueError(f"reconnect_timeout_s must be 0 or more, got {reconnect_timeout_s}")
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # The library's message may quote the string, password included: do not chain it.
            raise ValueError(
                "url is not a valid PostgreSQL connection string or URL, e.g. "
                "postgresql://user:password@host:5432/database"
            ) from None
        self._url = url
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._auto_migrate = auto_migrate
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_timeout_s = reconnect_timeout_s
        host = str(params.get("host") or os.environ.get("PGHOST") or "localhost")
        port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
        dbname = str(params.get("dbname") or os.environ.get("PGDATABASE") or "")
        user = str(params.get("user") or os.environ.get("PGUSER") or "")
        self._target = f"{host}:{port}/{dbname or '(default database)'}"
        if user:
            self._target += f" as user '{user}'"
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            # No server-side prepared statements: a pooler in transaction mode would send the
            # EXECUTE to a server connection that never saw the PREPARE.
            "prepare_threshold": None,
            "connect_timeout": max(2, math.ceil(connect_timeout_s)),
        }
        if "application_name" not in params:
            self._connect_kwargs["application_name"] = "keel"
        self._sql = Statements(schema)
        self._pool: AsyncConnectionPool[_Connection] | None = None
        self._open_lock = asyncio.Lock()
        self._schema_ready = False
        self._closed = False

    @property
    def schema(self) -> str:
        """The schema that holds this store's tables."""
        return self._schema

    def __repr__(self) -> str:
        return f"PostgresStore('{self._target}', schema={self._schema!r})"

    async def upgrade(self) -> list[int]:
        """Apply the migrations the schema lacks; return their versions (``[]``: none).

        Safe to run from several processes at once: a transaction-level advisory lock makes
        them take turns, and the later ones find nothing to do.
        """
        async with self._open_lock:
            self._check_open()
            conn = await self._connect()
            try:
                applied = await self._migrate(conn)
            finally:
                await conn.close()
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

        With ``exclusive``, the thread's advisory lock is taken, then a running run of the
        thread is looked for, then the run inserted, in one transaction:
        :class:`keel.errors.ThreadBusyError` if there is one. Raises
        :class:`keel.errors.JournalConflictError` if the run exists.
        """
        check_append(run_id, events, 0, record)
        check_ttl(ttl_s)
        params = _append_params(record, events, 0)
        params["lease_owner"] = owner
        params["ttl"] = float(ttl_s)
        action = f"start run '{run_id}'"

        async def write(conn: _Connection) -> Lease:
            if exclusive:
                async with conn.transaction():
                    await conn.execute(LOCK, (f"keel:thread:{self._schema}:{record.thread_id}",))
                    cursor = await conn.execute(
                        self._sql.other_active_run, (record.thread_id, run_id)
                    )
                    active = await cursor.fetchone()
                    if active is not None:
                        raise ThreadBusyError(record.thread_id, active_run_id=active[0])
                    expected = started_after(events)
                    if expected is not None:
                        cursor = await conn.execute(self._sql.thread_last_seq, (record.thread_id,))
                        found = await cursor.fetchone()
                        actual = 0 if found is None else int(found[0])
                        if actual != expected:
                            raise ThreadChangedError(
                                record.thread_id, expected=expected, actual=actual
                            )
                    row = await (await conn.execute(self._sql.start_run, params)).fetchone()
            else:
                row = await (await conn.execute(self._sql.start_run, params)).fetchone()
            if row is None:
                state = await self._state(conn, run_id)
                actual = 0 if state is None else state[0].last_seq
                raise JournalConflictError(run_id, expected=0, actual=actual)
            return Lease(run_id=run_id, owner=owner, token=1, expires_at=float(row[0]))

        async def committed(conn: _Connection) -> Lease | None:
            # Was the conflict our own first attempt? Same events, leased to us with token 1.
            if not await self._appended(conn, run_id, 0, params["bodies"]):
                return None
            found = await self._state(conn, run_id)
            if found is None:
                return None
            state, _ = found
            if state.owner != owner or state.token != 1 or state.expires_at is None:
                return None
            return Lease(run_id=run_id, owner=owner, token=1, expires_at=state.expires_at)

        return await self._write_once(action, write, committed)

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

        One statement, one transaction: the events, the run's summary and ``thread_messages``
        are all written, or none is. Raises, writing nothing,
        :class:`keel.errors.LeaseLostError` if ``lease`` is not the run's current lease,
        :class:`keel.errors.RunLeasedError` if there is no ``lease`` and another process holds
        an unexpired one, and :class:`keel.errors.JournalConflictError` if the journal does not
        hold exactly ``expected_seq`` events. If the connection drops, the append is retried
        once on a fresh one, and a conflict that its own first attempt caused counts as done.
        """
        check_append(run_id, events, expected_seq, record, lease)
        params = _append_params(record, events, expected_seq)
        last_seq = expected_seq + len(events)
        new = expected_seq == 0
        if thread_messages:
            params["messages"] = [encode_message(m).decode() for m in thread_messages]
            params["message_count"] = len(thread_messages)
        if lease is not None:
            params["lease_token"] = lease.token
            params["lease_owner"] = lease.owner
        statement = (
            None
            if new and lease is not None
            else self._sql.appends[new, lease is not None, bool(thread_messages)]
        )

        async def write(conn: _Connection) -> int:
            # A refusal read after the statement may find that what refused it has changed
            # (a lease expired in between): then the append is simply tried again.
            for _ in range(3):
                if statement is not None:
                    row = await (await conn.execute(statement, params)).fetchone()
                    if row is not None and row[0] == 1:
                        return last_seq
                found = await self._state(conn, run_id)
                state, now = found if found is not None else (None, await self._now(conn))
                error = refusal(
                    run_id, expected_seq=expected_seq, lease=lease, state=state, now=now
                )
                if error is not None:
                    raise error
            raise StoreError(
                f"PostgreSQL store {self._target}: append to run '{run_id}' was refused three "
                "times for reasons that were gone when checked; the run is contended, retry"
            )

        async def committed(conn: _Connection) -> int | None:
            if await self._appended(conn, run_id, expected_seq, params["bodies"]):
                return last_seq
            return None

        return await self._write_once(f"append to run '{run_id}'", write, committed)

    async def acquire_lease(
        self, run_id: str, *, owner: str, ttl_s: float, force: bool = False
    ) -> Lease:
        """Take the run's lease if it is free, expired or ``owner``'s own; ``force`` takes it
        from another owner. See :meth:`keel.ports.Store.acquire_lease`."""
        check_ttl(ttl_s)
        params = {"run_id": run_id, "owner": owner, "ttl": float(ttl_s), "force": force}

        async def write(conn: _Connection) -> Lease:
            for _ in range(3):
                row = await (await conn.execute(self._sql.acquire_lease, params)).fetchone()
                if row is not None:
                    token, expires_at = row
                    return Lease(run_id=run_id, owner=owner, token=token, expires_at=expires_at)
                found = await self._state(conn, run_id)
                if found is None:
                    raise RunNotFoundError(run_id)
                state, now = found
                holder = state.holder(now)
                if holder is not None and holder[0] != owner:
                    raise RunLeasedError(run_id, owner=holder[0], expires_at=holder[1])
                # The lease was released or expired between the two statements: try again.
            raise StoreError(
                f"PostgreSQL store {self._target}: the lease on run '{run_id}' changed hands "
                "three times while being acquired; retry"
            )

        return await self._call(f"acquire the lease on run '{run_id}'", write)

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease:
        """Extend ``lease`` to ``ttl_s`` from now; :class:`keel.errors.LeaseLostError` if it is
        no longer current."""
        check_ttl(ttl_s)
        params = (float(ttl_s), lease.run_id, lease.token, lease.owner)

        async def write(conn: _Connection) -> Lease:
            row = await (await conn.execute(self._sql.renew_lease, params)).fetchone()
            if row is None:
                found = await self._state(conn, lease.run_id)
                raise lease_lost(lease, None if found is None else found[0])
            return Lease(
                run_id=lease.run_id, owner=lease.owner, token=lease.token, expires_at=row[0]
            )

        return await self._call(f"renew the lease on run '{lease.run_id}'", write)

    async def release_lease(self, lease: Lease) -> None:
        """Give ``lease`` up if it is still current; otherwise do nothing."""
        params = (lease.run_id, lease.token, lease.owner)

        async def write(conn: _Connection) -> None:
            await conn.execute(self._sql.release_lease, params)

        await self._call(f"release the lease on run '{lease.run_id}'", write)

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete runs with their events, leases and thread messages; return how many existed.

        Raises :class:`keel.errors.RunLeasedError`, deleting nothing, if one has a live lease.
        (If the connection drops and the retry finds the runs already gone, the count is 0.)
        """
        ids = sorted(set(run_ids))

        async def write(conn: _Connection) -> int:
            if not ids:
                return 0
            async with conn.transaction():
                rows = await (await conn.execute(self._sql.lock_runs, (ids,))).fetchall()
                await self._refuse_leased(conn, rows)
                return await self._delete(conn, [row[0] for row in rows])

        return await self._call("delete runs", write)

    async def delete_runs_before(self, before: float) -> int:
        """Delete runs created before ``before``, except ``running`` or leased ones."""

        async def write(conn: _Connection) -> int:
            async with conn.transaction():
                cursor = await conn.execute(self._sql.lock_old_runs, (before,))
                return await self._delete(conn, [row[0] for row in await cursor.fetchall()])

        return await self._call("delete old runs", write)

    async def delete_thread(self, thread_id: str) -> int:
        """Delete the thread's messages and runs; return how many runs.

        Raises :class:`keel.errors.RunLeasedError`, deleting nothing, if a run has a live lease.
        The thread's message counter stays, so its numbers are never handed out again.
        """

        async def write(conn: _Connection) -> int:
            async with conn.transaction():
                cursor = await conn.execute(self._sql.lock_thread_runs, (thread_id,))
                rows = await cursor.fetchall()
                await self._refuse_leased(conn, rows)
                deleted = await self._delete(conn, [row[0] for row in rows])
                await conn.execute(self._sql.delete_thread_messages, (thread_id,))
                return deleted

        return await self._call(f"delete thread '{thread_id}'", write)

    # --- reads ----------------------------------------------------------------------------

    async def load(self, run_id: str) -> list[Event]:
        """All events of a run, in order; raises :class:`keel.errors.RunNotFoundError`."""
        rows = await self._fetchall(f"load run '{run_id}'", self._sql.select_events, (run_id,))
        return decode_events(rows, run_id, where=self._where())

    async def get_run(self, run_id: str) -> RunRecord:
        """The latest summary of a run; raises :class:`keel.errors.RunNotFoundError`."""
        rows = await self._fetchall(f"read run '{run_id}'", self._sql.select_run, (run_id,))
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
        statement = self._sql.list_runs[thread_id is not None, status is not None]
        rows = await self._fetchall("list runs", statement, params)
        return [_run_record(row) for row in rows]

    async def recoverable_runs(self, *, limit: int = 100) -> list[RunRecord]:
        """Runs ``running`` with no unexpired lease, oldest first (``created_at``, ``run_id``)."""
        check_limit(limit)
        rows = await self._fetchall("list recoverable runs", self._sql.recoverable_runs, (limit,))
        return [_run_record(row) for row in rows]

    async def active_run(self, thread_id: str) -> RunRecord | None:
        """The newest run of the thread with status ``running``, or ``None``."""
        rows = await self._fetchall(
            f"read thread '{thread_id}'", self._sql.active_run, (thread_id,)
        )
        return _run_record(rows[0]) if rows else None

    async def thread_history(self, thread_id: str, *, upto_seq: int | None = None) -> ThreadHistory:
        """The thread's messages up to ``upto_seq`` (all if ``None``) and its last seq."""
        bound = _MAX_SEQ if upto_seq is None else upto_seq
        rows = await self._fetchall(
            f"read thread '{thread_id}'", self._sql.thread_history, (bound, thread_id)
        )
        return decode_thread_history(rows, thread_id, where=self._where())

    async def close(self) -> None:
        """Close the pool's connections. Closing twice is fine; any other use afterwards
        raises."""
        async with self._open_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- calls, retries and errors ----------------------------------------------------------

    async def _attempt(self, work: Callable[[_Connection], Awaitable[_T]]) -> _T:
        """Run ``work`` on a pooled connection; a lost connection becomes ``_DisconnectedError``."""
        pool = await self._ready()
        try:
            async with pool.connection() as conn:
                try:
                    return await work(conn)
                except psycopg.OperationalError as exc:
                    if conn.closed or conn.broken or _server_gone(exc):
                        raise _DisconnectedError(exc) from exc
                    raise
        except PoolTimeout as exc:
            raise _DisconnectedError(exc) from exc

    async def _recover(self) -> None:
        """After a lost connection: have the pool test its idle connections and replace the
        dead ones (after a server restart they all are), so the retry gets a live one."""
        pool = self._pool
        if pool is not None:
            with contextlib.suppress(psycopg.Error):
                await pool.check()

    async def _call(self, action: str, work: Callable[[_Connection], Awaitable[_T]]) -> _T:
        """Run ``work``; while the connection is lost (a server restart, a failover), try again
        on fresh ones until ``reconnect_timeout_s`` has passed."""
        return await self._retrying(action, work, committed=None)

    async def _write_once(
        self,
        action: str,
        write: Callable[[_Connection], Awaitable[_T]],
        committed: Callable[[_Connection], Awaitable[_T | None]],
    ) -> _T:
        """Run a write that must happen exactly once, such as an append.

        If the connection drops, the write may have committed. It is tried again (until
        ``reconnect_timeout_s``); if a retry conflicts, ``committed`` says whether the conflict
        is an earlier attempt's own work (then its result stands) or another writer's (then
        the conflict is raised).
        """
        return await self._retrying(action, write, committed=committed)

    async def _retrying(
        self,
        action: str,
        work: Callable[[_Connection], Awaitable[_T]],
        *,
        committed: Callable[[_Connection], Awaitable[_T | None]] | None,
    ) -> _T:
        deadline = time.monotonic() + self._reconnect_timeout_s
        delay = 0.05
        retried = False
        while True:
            try:
                return await self._attempt(work)
            except JournalConflictError:
                if not retried or committed is None:
                    raise
                outcome = await self._call(action, committed)
                if outcome is None:
                    raise
                return outcome
            except _DisconnectedError as exc:
                if time.monotonic() >= deadline:
                    raise self._error(action, exc.cause) from exc.cause
                retried = True
                await self._recover()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except psycopg.Error as exc:
                raise self._error(action, exc) from exc

    async def _fetchall(
        self, action: str, statement: str, params: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        async def read(conn: _Connection) -> list[tuple[Any, ...]]:
            return await (await conn.execute(statement, params)).fetchall()

        return await self._call(action, read)

    async def _state(self, conn: _Connection, run_id: str) -> tuple[LeaseState, float] | None:
        """The run's position and lease, with the database's time; ``None``: no such run."""
        row = await (await conn.execute(self._sql.run_state, (run_id,))).fetchone()
        if row is None:
            return None
        last_seq, owner, token, expires_at, now = row
        return LeaseState(last_seq, owner, token, expires_at), now

    async def _now(self, conn: _Connection) -> float:
        row = await (await conn.execute(self._sql.select_now)).fetchone()
        assert row is not None
        return float(row[0])

    async def _appended(
        self, conn: _Connection, run_id: str, expected_seq: int, bodies: list[str]
    ) -> bool:
        """Whether the events after ``expected_seq`` are exactly ``bodies``, as stored."""
        cursor = await conn.execute(self._sql.appended_bodies, (run_id, expected_seq, len(bodies)))
        return [row[0] for row in await cursor.fetchall()] == bodies

    async def _refuse_leased(self, conn: _Connection, rows: list[tuple[Any, ...]]) -> None:
        """Raise ``RunLeasedError`` for the first of the locked ``rows`` with a live lease."""
        if not rows:
            return
        now = await self._now(conn)
        for run_id, owner, expires_at in rows:
            if owner is not None and expires_at is not None and expires_at > now:
                raise RunLeasedError(run_id, owner=owner, expires_at=expires_at)

    async def _delete(self, conn: _Connection, run_ids: list[str]) -> int:
        """Delete locked runs and what derives from them (children first: foreign keys)."""
        if not run_ids:
            return 0
        await conn.execute(self._sql.delete_thread_messages_of_runs, (run_ids,))
        await conn.execute(self._sql.delete_events_of_runs, (run_ids,))
        cursor = await conn.execute(self._sql.delete_runs, (run_ids,))
        return cursor.rowcount

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error(repr(self))

    async def _ready(self) -> AsyncConnectionPool[_Connection]:
        """The open pool, connecting and checking (or migrating) the schema on first use."""
        pool = self._pool
        if pool is not None:
            return pool
        async with self._open_lock:
            self._check_open()
            if self._pool is not None:
                return self._pool
            if not self._schema_ready:
                # One direct connection first: its error says what is wrong (refused, no such
                # database, authentication), where a pool would only time out.
                conn = await self._connect()
                try:
                    if self._auto_migrate:
                        await self._migrate(conn)
                    else:
                        await self._check_schema(conn)
                finally:
                    await conn.close()
                self._schema_ready = True
            pool = AsyncConnectionPool(
                self._url,
                kwargs=self._connect_kwargs,
                min_size=self._min_size,
                max_size=self._max_size,
                open=False,
                # No check as a connection is handed out: it costs a round trip on every call,
                # and psycopg_pool backs off 1 s, 2 s, 4 s ... between consecutive failed
                # checks, so after a server restart a pool of N dead connections made the first
                # call wait about 2**(N-1) seconds (15 s for 5, measured). Instead a call that
                # finds its connection dead has the pool check all its idle connections at
                # once (_call, _write_once), then retries on a fresh one.
                timeout=self._connect_timeout_s,
                name=f"keel-{self._schema}",
            )
            try:
                await pool.open(wait=True, timeout=self._connect_timeout_s)
            except PoolTimeout as exc:
                await pool.close()
                raise self._connect_error(exc) from exc
            self._pool = pool
            return pool

    async def _connect(self) -> _Connection:
        try:
            return await psycopg.AsyncConnection.connect(self._url, **self._connect_kwargs)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from exc

    async def _migrate(self, conn: _Connection) -> list[int]:
        """Apply the migrations the schema lacks, in one transaction; return their versions."""
        applied: list[int] = []
        try:
            async with conn.transaction():
                # Processes starting together take turns; the later ones find nothing to do.
                await conn.execute(LOCK, (f"keel:migrate:{self._schema}",))
                await conn.execute(self._sql.create_schema)
                await conn.execute(self._sql.create_migrations_table)
                version = await self._version(conn)
                self._refuse_newer(version)
                for migration in MIGRATIONS:
                    if migration.version <= version:
                        continue
                    for statement in migration.statements:
                        await conn.execute(self._sql.render(statement))
                    await conn.execute(
                        self._sql.insert_migration, (migration.version, migration.name)
                    )
                    applied.append(migration.version)
        except psycopg.Error as exc:
            raise self._error("schema migration", exc) from exc
        return applied

    async def _check_schema(self, conn: _Connection) -> None:
        """Refuse a schema that is not this Keel's (``auto_migrate=False``)."""
        try:
            cursor = await conn.execute(SCHEMA_EXISTS, (self._sql.qualified_migrations_table,))
            exists = await cursor.fetchone()
            version = await self._version(conn) if exists is not None and exists[0] else 0
        except psycopg.Error as exc:
            raise self._error("schema check", exc) from exc
        self._refuse_newer(version)
        if version < LATEST_VERSION:
            raise StoreError(
                f"the Keel schema '{self._schema}' in PostgreSQL at {self._target} has version "
                f"{version} and this Keel needs version {LATEST_VERSION}; run `keel db upgrade` "
                "(or open the store with auto_migrate=True)"
            )

    async def _version(self, conn: _Connection) -> int:
        row = await (await conn.execute(self._sql.select_schema_version)).fetchone()
        return 0 if row is None else int(row[0])

    def _refuse_newer(self, version: int) -> None:
        if version > LATEST_VERSION:
            raise StoreError(
                f"the Keel schema '{self._schema}' in PostgreSQL at {self._target} was written "
                f"by a newer Keel (schema {version}; this Keel knows up to schema "
                f"{LATEST_VERSION}); upgrade keel"
            )

    def _where(self) -> str:
        return f"in schema '{self._schema}' of PostgreSQL at {self._target}"

    def _connect_error(self, exc: psycopg.Error) -> StoreError:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return StoreError(
            f"cannot connect to PostgreSQL at {self._target}: {reason}; check that the server "
            "is running and reachable from here, and that the URL's host, port, database, "
            "user and password are right"
        )

    def _error(self, action: str, exc: psycopg.Error) -> StoreError:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        message = f"PostgreSQL store {self._target}, schema '{self._schema}': {action} failed: "
        message += reason
        if isinstance(exc, PoolTimeout):
            message += (
                f"; no connection was free or could be made within connect_timeout_s="
                f"{self._connect_timeout_s:g}: check that the server is up, or raise max_size"
            )
        elif isinstance(exc, psycopg.OperationalError):
            message += "; the connection was lost: check that the server is up and reachable"
        return StoreError(message)


def _server_gone(exc: psycopg.OperationalError) -> bool:
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SERVER_GONE


def _append_params(record: RunRecord, events: Sequence[Event], expected_seq: int) -> dict[str, Any]:
    """The named parameters of the run's row and its events' arrays."""
    params: dict[str, Any] = {column: getattr(record, column) for column in RUN_COLUMNS}
    params["last_seq"] = expected_seq + len(events)
    params["expected_seq"] = expected_seq
    params["types"] = [event.type for event in events]
    params["ats"] = [float(event.at) for event in events]
    params["bodies"] = [encode_event(event).decode() for event in events]
    return params


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(**dict(zip(RUN_COLUMNS, row, strict=True)))

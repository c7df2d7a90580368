"""The PostgreSQL store: many processes on many hosts share one database.

Install with ``pip install 'keel-runtime[postgres]'`` (psycopg 3 and its pool). The logic is
the shared SQL store's (:mod:`keel.stores._sql`); this module runs its programs on a
connection pool.

One round trip per append, one statement per group of appends
--------------------------------------------------------------
An append is one statement in autocommit (:mod:`.postgres_sql`): the run's conditional UPDATE
and the inserts of its events and messages are CTEs of one statement. Measured on the
reference machine (2 cores, PostgreSQL 15 on loopback, ``fsync`` on): a lone append of a
3-event step takes 0.65-0.9 ms where a bare one-row INSERT commit takes 0.17-0.38 ms; the rest
is encoding (25-30 µs), the server parsing and planning the statement anew each time (prepared
statements would save it but break behind pgbouncer in transaction mode) and executing it.
Appends and starts that wait at the same time are committed together, in one statement
(:mod:`.postgres_group`), which the server plans once for the whole group. Notifications for
other processes' watchers are sent after the commit, coalesced (:mod:`.postgres_listen`).

Behind a connection pooler
--------------------------
pgbouncer in transaction mode hands each transaction to any server connection, so the store
keeps no session state: no server-side prepared statements (``prepare_threshold=None``), no
``SET search_path`` (every table is written ``schema.table``), and only transaction-level
advisory locks (migrations take turns under one; an exclusive start locks its thread with one).
``LISTEN`` needs a session, so watching uses ``listen_url`` (a direct connection) if given.

Lost connections and server restarts
------------------------------------
A call whose connection is dead (a restart, a pooler or a firewall closed it) or drops mid-way
has the pool check its idle connections, replacing the dead ones, and is retried on fresh ones
until ``reconnect_timeout_s``. The pool does not test each connection as it hands it out: that
costs a round trip per call, and psycopg_pool backs off exponentially between failed checks
(after a restart a pool of five dead connections kept the first call waiting 15 s, measured).
Reads, lease calls and deletions are safe to retry as they are. An append or a start whose
connection dropped (alone or in a group) may have committed: the retry then succeeds (it had
not) or is refused (a conflict, or for an append that gave its lease up, a lost lease), and
the store compares the events after ``expected_seq``, as stored JSON text, with its own; equal
means the first attempt committed and the call succeeds. No append is lost or written twice. A
claim whose connection dropped may have leased runs that nobody drives: their leases expire
and the next claim takes them.

Lease times are the database's clock (``clock_timestamp()``): hosts whose clocks disagree
agree on leases. The URL's password is in no ``repr``, message or chained error.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from keel._redact import redact
from keel.errors import ConfigurationError, JournalConflictError, LeaseLostError, StoreError
from keel.ports import Change
from keel.stores._common import closed_error
from keel.stores._keyring import Keyring
from keel.stores._signals import Signals
from keel.stores._sql.postgres_group import Alone, GroupWriter
from keel.stores._sql.postgres_listen import Listeners, Notifier
from keel.stores._sql.postgres_schema import CREATE_MIGRATIONS_TABLE, LATEST_VERSION, MIGRATIONS
from keel.stores._sql.postgres_sql import (
    PostgresPrograms,
    encode_payload,
    group_params,
    spelling,
)
from keel.stores._sql.program import Execute, ExecuteMany, Fetch, Notify, Program, Row, Task
from keel.stores._sql.programs import Write
from keel.stores._sql.statements import Statements
from keel.stores._sql.store import SQLStore

__all__ = ["PostgresStore"]

T = TypeVar("T")
_Connection = psycopg.AsyncConnection[tuple[Any, ...]]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# SQLSTATEs of a connection that the server ended: admin shutdown, crash, starting up.
_SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})

# The most writes committed in one statement.
_MAX_GROUP = 128

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_SCHEMA_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"


class _DisconnectedError(Exception):
    """A call lost its connection (or could not get one); ``cause`` is psycopg's error."""

    def __init__(self, cause: psycopg.Error) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class PostgresStore(SQLStore):
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
            connection was lost (a server restart, a failover) before failing.
        listen_url: Where ``watch`` opens its ``LISTEN`` connection (one per event loop);
            ``url`` by default. Point it at the server itself when ``url`` is a pooler in
            transaction mode, where ``LISTEN`` does not work.
        poll_interval_s: When ``LISTEN`` is impossible, how often watchers are woken to look
            again.
        keyring: Encrypts event bodies, thread messages and the runs' content fields
            (:class:`keel.stores.Keyring`); ``None`` writes them plain. Plain values are read
            either way.

    Nothing connects until first use. The pool belongs to the event loop that first uses it.
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
        listen_url: str | None = None,
        poll_interval_s: float = 0.25,
        keyring: Keyring | None = None,
    ) -> None:
        _check_options(schema, min_size, max_size, connect_timeout_s, reconnect_timeout_s)
        if not 0 < poll_interval_s <= 60:
            raise ConfigurationError(
                f"poll_interval_s must be more than 0 and at most 60 seconds, got "
                f"{poll_interval_s!r}; the default is 0.25"
            )
        params = _parse(url, "url")
        listen_params = params if listen_url is None else _parse(listen_url, "listen_url")
        self._secrets = {str(p["password"]) for p in (params, listen_params) if p.get("password")}
        self._url = url
        self._listen_url = url if listen_url is None else listen_url
        self._listen_names_itself = "application_name" in listen_params
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._auto_migrate = auto_migrate
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_timeout_s = reconnect_timeout_s
        self._target = _target(params)
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            # No server-side prepared statements: a pooler in transaction mode would send the
            # EXECUTE to a server connection that never saw the PREPARE.
            "prepare_threshold": None,
            "connect_timeout": max(2, math.ceil(connect_timeout_s)),
        }
        if "application_name" not in params:
            self._connect_kwargs["application_name"] = "keel"
        statements = Statements(spelling(schema))
        self._programs: PostgresPrograms = PostgresPrograms(
            statements, schema=schema, where=self._where(), keyring=keyring
        )
        self._render = statements.render
        self._signals = Signals()
        self._listeners = Listeners(
            connect=self._connect_listener,
            channel=self._programs.channel,
            signals=self._signals,
            poll_interval_s=poll_interval_s,
        )
        self._notifier = Notifier(self._send_notifications)
        self._group = GroupWriter(
            commit=self._write_group, committed=self._committed, max_group=_MAX_GROUP
        )
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

    async def schema_version(self) -> tuple[int, int]:
        """The schema's version in the database now, and the one this Keel writes."""
        try:
            return await self._attempt(self._version), LATEST_VERSION
        except (psycopg.Error, _DisconnectedError) as exc:
            raise StoreError(f"cannot read the schema version: {self._reason(exc)}") from None

    def watch(self, run_id: str | None) -> AbstractAsyncContextManager[Change]:
        """Watch ``run_id`` (``None``: the queue): see :meth:`keel.ports.Watchable.watch`."""
        return self._watch(run_id)

    @contextlib.asynccontextmanager
    async def _watch(self, run_id: str | None) -> AsyncIterator[Change]:
        self._check_open()
        await self._listeners.ensure()
        async with self._signals.watch(run_id) as registration:
            yield registration

    async def close(self) -> None:
        """Commit the waiting writes, send their notifications, close every connection.
        Closing twice is fine; any other use afterwards raises."""
        await self._group.drain()
        await self._notifier.flush()
        async with self._open_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        await self._listeners.close()
        if pool is not None:
            await pool.close()

    # --- running programs -------------------------------------------------------------------

    async def _run(self, task: Task[T], *, retried: bool = False) -> T:
        """Run ``task`` on its own; ``retried``: an earlier attempt (a group that lost its
        connection) may have committed it."""
        factory, atomic = task.program, task.atomic

        async def work(conn: _Connection) -> T:
            return await self._drive(conn, factory, atomic)

        check = task.committed
        if check is None:
            return await self._retrying(task.action, work, committed=None)

        async def committed(conn: _Connection) -> tuple[T] | None:
            return await self._drive(conn, check, False)

        return await self._retrying(task.action, work, committed=committed, retried=retried)

    async def _write(self, task: Task[T], w: Write, written: Callable[[Row], T]) -> T:
        if w.expected_seq == 0 and (w.messages or w.lease is not None):
            return await self._run(task)  # an import with messages, or refused: never grouped
        return await self._group.write(w, lambda retried: self._run(task, retried=retried), written)

    async def _write_group(self, writes: list[Write]) -> list[Row] | Alone:
        """Commit ``writes`` in one statement; the rows of those allowed, or :class:`Alone`."""
        statement, params = self._programs.group_write, group_params(writes)

        async def work(conn: _Connection) -> list[Row]:
            return await (await conn.execute(statement, params)).fetchall()

        try:
            return await self._attempt(work)
        except _DisconnectedError:
            return Alone(maybe_committed=True)
        except (psycopg.Error, StoreError):
            return Alone(maybe_committed=False)

    def _committed(self, keys: list[str]) -> None:
        """Writes committed: wake this process's watchers now, and other processes' soon."""
        self._signals.notify(*keys)
        self._notifier.add(keys)

    async def _send_notifications(self, keys: list[str]) -> None:
        pool = self._pool
        if pool is None:
            return
        params = {"channel": self._programs.channel, "keys": [encode_payload(k) for k in keys]}
        async with pool.connection() as conn:
            await conn.execute(self._programs.notify_sql, params)

    async def _drive(self, conn: _Connection, factory: Callable[[], Program[T]], atomic: bool) -> T:
        keys: list[str] = []
        if atomic:
            async with conn.transaction():
                result = await self._steps(conn, factory(), keys)
        else:
            result = await self._steps(conn, factory(), keys)
        if keys:
            self._committed(keys)
        return result

    async def _steps(self, conn: _Connection, program: Program[T], keys: list[str]) -> T:
        try:
            op = next(program)
            while True:
                value: Any = None
                if isinstance(op, Execute):
                    value = (await conn.execute(op.sql, op.params)).rowcount
                elif isinstance(op, Fetch):
                    value = await (await conn.execute(op.sql, op.params)).fetchall()
                elif isinstance(op, ExecuteMany):
                    async with conn.cursor() as cursor:
                        await cursor.executemany(op.sql, op.rows)
                elif isinstance(op, Notify):
                    keys.extend(op.keys)
                op = program.send(value)
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            program.close()

    async def _attempt(self, work: Callable[[_Connection], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection (a lost one raises ``_DisconnectedError``)."""
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

    async def _retrying(
        self,
        action: str,
        work: Callable[[_Connection], Awaitable[T]],
        *,
        committed: Callable[[_Connection], Awaitable[tuple[T] | None]] | None,
        retried: bool = False,
    ) -> T:
        """Run ``work``; while the connection is lost, try again on fresh ones until
        ``reconnect_timeout_s``. If a retried write is refused (a conflict, or a lost lease: an
        append may have given it up), ``committed`` says whether the refusal is due to an
        earlier attempt's own commit (its result stands) or another writer's (the error is
        raised). ``retried``: an attempt was made before this call."""
        deadline = time.monotonic() + self._reconnect_timeout_s
        delay = 0.05
        while True:
            try:
                return await self._attempt(work)
            except (JournalConflictError, LeaseLostError):
                if not retried or committed is None:
                    raise
                outcome = await self._retrying(action, committed, committed=None)
                if outcome is None:
                    raise
                return outcome[0]
            except _DisconnectedError as exc:
                if time.monotonic() >= deadline:
                    raise self._error(action, exc.cause) from self._cause(exc.cause)
                retried = True
                await self._recover()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except psycopg.Error as exc:
                raise self._error(action, exc) from self._cause(exc)

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
                # No check as a connection is handed out (see the module's docstring): a call
                # that finds its connection dead has the pool check them all, then retries.
                timeout=self._connect_timeout_s,
                name=f"keel-{self._schema}",
            )
            try:
                await pool.open(wait=True, timeout=self._connect_timeout_s)
            except PoolTimeout as exc:
                await pool.close()
                raise self._connect_error(exc) from self._cause(exc)
            self._pool = pool
            return pool

    async def _connect(self) -> _Connection:
        try:
            return await psycopg.AsyncConnection.connect(self._url, **self._connect_kwargs)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from self._cause(exc)

    async def _connect_listener(self) -> _Connection:
        kwargs = dict(self._connect_kwargs)
        kwargs.pop("application_name", None)
        if not self._listen_names_itself:
            kwargs["application_name"] = "keel-listen"
        return await psycopg.AsyncConnection.connect(self._listen_url, **kwargs)

    async def _migrate(self, conn: _Connection) -> list[int]:
        """Apply the migrations the schema lacks, in one transaction; return their versions."""
        applied: list[int] = []
        render = self._render
        try:
            async with conn.transaction():
                # Processes starting together take turns; the later ones find nothing to do.
                await conn.execute(_LOCK, (f"keel:migrate:{self._schema}",))
                await conn.execute(render("CREATE SCHEMA IF NOT EXISTS {schema}"))
                await conn.execute(render(CREATE_MIGRATIONS_TABLE))
                version = await self._version(conn)
                self._refuse_newer(version)
                for migration in MIGRATIONS:
                    if migration.version <= version:
                        continue
                    for statement in migration.statements:
                        await conn.execute(render(statement))
                    await conn.execute(
                        render(
                            "INSERT INTO {schema}.schema_migrations (version, name, applied_at) "
                            "VALUES (:version, :name, {now})"
                        ),
                        {"version": migration.version, "name": migration.name},
                    )
                    applied.append(migration.version)
        except psycopg.Error as exc:
            raise self._error("schema migration", exc) from self._cause(exc)
        return applied

    async def _check_schema(self, conn: _Connection) -> None:
        """Refuse a schema that is not this Keel's (``auto_migrate=False``)."""
        try:
            table = self._render("{schema}.schema_migrations")
            exists = await (await conn.execute(_SCHEMA_EXISTS, (table,))).fetchone()
            version = await self._version(conn) if exists is not None and exists[0] else 0
        except psycopg.Error as exc:
            raise self._error("schema check", exc) from self._cause(exc)
        self._refuse_newer(version)
        if version < LATEST_VERSION:
            raise StoreError(
                f"the Keel schema '{self._schema}' in PostgreSQL at {self._target} has version "
                f"{version} and this Keel needs version {LATEST_VERSION}; run `keel db upgrade` "
                "(or open the store with auto_migrate=True)"
            )

    async def _version(self, conn: _Connection) -> int:
        statement = self._render("SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_migrations")
        row = await (await conn.execute(statement)).fetchone()
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

    def _reason(self, exc: BaseException) -> str:
        """psycopg's message for ``exc`` with any password masked."""
        reason = redact(" ".join(str(exc).split()) or type(exc).__name__)
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return reason

    def _cause(self, exc: BaseException) -> BaseException | None:
        """``exc`` to chain, unless its message quotes a password (then nothing is chained)."""
        text = str(exc)
        if any(secret in text for secret in self._secrets) or redact(text) != text:
            return None
        return exc

    def _connect_error(self, exc: psycopg.Error) -> StoreError:
        return StoreError(
            f"cannot connect to PostgreSQL at {self._target}: {self._reason(exc)}; check that "
            "the server is running and reachable from here, and that the URL's host, port, "
            "database, user and password are right"
        )

    def _error(self, action: str, exc: psycopg.Error) -> StoreError:
        message = f"PostgreSQL store {self._target}, schema '{self._schema}': {action} failed: "
        message += self._reason(exc)
        if isinstance(exc, PoolTimeout):
            message += (
                f"; no connection was free or could be made within connect_timeout_s="
                f"{self._connect_timeout_s:g}: check that the server is up, or raise max_size"
            )
        elif isinstance(exc, psycopg.OperationalError):
            message += "; the connection was lost: check that the server is up and reachable"
        return StoreError(message)


def _check_options(
    schema: str,
    min_size: int,
    max_size: int,
    connect_timeout_s: float,
    reconnect_timeout_s: float,
) -> None:
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"schema must be a plain identifier (letters, digits and _, not starting with a "
            f"digit, at most 63 characters), got {schema!r}; e.g. schema='keel'"
        )
    if min_size < 0 or max_size < max(min_size, 1):
        raise ConfigurationError(
            f"need 0 <= min_size <= max_size and max_size >= 1, got min_size={min_size}, "
            f"max_size={max_size}; e.g. min_size=1, max_size=10"
        )
    if not connect_timeout_s > 0:
        raise ConfigurationError(
            f"connect_timeout_s must be a positive number of seconds, got {connect_timeout_s!r};"
            " the default is 10"
        )
    if not reconnect_timeout_s >= 0:
        raise ConfigurationError(
            f"reconnect_timeout_s must be 0 or more seconds, got {reconnect_timeout_s!r}; "
            "the default is 15"
        )


def _parse(url: str, name: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(url)
    except psycopg.Error:
        # The library's message may quote the string, password included: do not chain it.
        raise ConfigurationError(
            f"{name} is not a valid PostgreSQL connection string or URL; write it as "
            "postgresql://user:password@host:5432/database"
        ) from None


def _target(params: dict[str, Any]) -> str:
    """``host:port/db as user 'u'`` for messages: never the password."""
    host = str(params.get("host") or os.environ.get("PGHOST") or "localhost")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    dbname = str(params.get("dbname") or os.environ.get("PGDATABASE") or "")
    user = str(params.get("user") or os.environ.get("PGUSER") or "")
    target = f"{host}:{port}/{dbname or '(default database)'}"
    return target + (f" as user '{user}'" if user else "")


def _server_gone(exc: psycopg.OperationalError) -> bool:
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SERVER_GONE

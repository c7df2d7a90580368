"""The audit log in PostgreSQL (psycopg 3, the ``postgres`` extra): two tables in the schema
of Keel's store (``keel`` by default).

The same tables as on SQLite (:mod:`keel.audit._sqlite`): ``audit_log`` and a one-row
``audit_head``, with triggers that refuse ``UPDATE``, ``DELETE`` and ``TRUNCATE`` on the
records. An append locks the head row (``SELECT ... FOR UPDATE``) before reading it, so
appends from every process and host take turns and the chain never forks; the records and
the new head are committed together. Verification reads in one ``REPEATABLE READ``
transaction, a snapshot that appends made meanwhile do not change.

Like Keel's store, nothing depends on ``search_path`` (every table is written
``schema.table``) and no server-side statement is prepared, so a pooler in transaction mode
works. A connection that was lost is replaced on the next call; the call that lost it fails
with :class:`keel.errors.StoreError` (an append is not retried: it may have committed).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from keel.errors import ConfigurationError, MissingExtraError, StoreError

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError(
        package="psycopg", extra="postgres", feature="The PostgreSQL audit log"
    ) from exc

from keel._redact import redact
from keel.audit._log import AuditLog, Snapshot
from keel.audit._records import GENESIS_HASH, AuditEntry, AuditHead, AuditRecord, chain
from keel.audit._rows import COLUMNS, record_of, row_of

__all__ = ["PostgresAuditLog"]

T = TypeVar("T")
_Connection = psycopg.AsyncConnection[tuple[Any, ...]]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Statements made once under a lock, when the table is missing; {schema} is filled in with a
# quoted identifier.
_SETUP = (
    "SELECT pg_advisory_xact_lock(hashtextextended('keel.audit.setup', 0))",
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """CREATE TABLE IF NOT EXISTS {schema}.audit_log (
        seq BIGINT PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
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
    """CREATE TABLE IF NOT EXISTS {schema}.audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "INSERT INTO {schema}.audit_head (id, seq, hash) VALUES (1, 0, %s) ON CONFLICT (id) DO NOTHING",
    """CREATE OR REPLACE FUNCTION {schema}.audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$""",
    "DROP TRIGGER IF EXISTS audit_log_no_change ON {schema}.audit_log",
    """CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON {schema}.audit_log
    FOR EACH ROW EXECUTE FUNCTION {schema}.audit_log_append_only()""",
    "DROP TRIGGER IF EXISTS audit_log_no_truncate ON {schema}.audit_log",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {schema}.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_log_append_only()""",
)
_EXISTS = "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL"
_HEAD = "SELECT seq, hash FROM {schema}.audit_head WHERE id = 1"
_INSERT = (
    f"INSERT INTO {{schema}}.audit_log ({', '.join(COLUMNS)}) "  # noqa: S608 - from constants
    f"VALUES ({', '.join(['%s'] * len(COLUMNS))})"
)
_SELECT = (
    f"SELECT {', '.join(COLUMNS)} FROM {{schema}}.audit_log "  # noqa: S608 - from constants
    "WHERE seq > %s ORDER BY seq LIMIT %s"
)
_SEQ_OF = "SELECT seq FROM {schema}.audit_log WHERE hash = %s"
_SET_HEAD = "UPDATE {schema}.audit_head SET seq = %s, hash = %s WHERE id = 1"


class PostgresAuditLog(AuditLog):
    """An :class:`keel.audit.AuditLog` in PostgreSQL, shared by any number of processes.

    Args:
        url: A libpq connection string or URL, e.g. ``postgresql://keel:secret@db/keel``
            (the one Keel's store uses).
        schema: The schema of the tables (created if missing); ``keel`` like the store's.
        clock: Gives ``at`` of new records (``time.time`` by default).
        connect_timeout_s: How long to wait for a connection.
        page_size: How many records :meth:`verify` reads at a time.

    Nothing connects until first use. The URL's password never appears in a ``repr`` or a
    message.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = "keel",
        clock: Callable[[], float] | None = None,
        connect_timeout_s: float = 10.0,
        page_size: int = 1000,
    ) -> None:
        super().__init__(clock=clock, page_size=page_size)
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"schema must be a plain identifier (letters, digits and _, not starting with "
                f"a digit, at most 63 characters), got {schema!r}; e.g. schema='keel'"
            )
        if not connect_timeout_s > 0:
            raise ConfigurationError(
                f"connect_timeout_s must be a positive number of seconds, got "
                f"{connect_timeout_s!r}; the default is 10"
            )
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # psycopg's message may quote the string, password included: do not chain it.
            raise ConfigurationError(
                "the audit log's url is not a valid PostgreSQL connection string or URL; write "
                "it as postgresql://user:password@host:5432/database"
            ) from None
        self._url = url
        self._schema = schema
        self._where = (
            f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/"
            f"{params.get('dbname') or '(default database)'}"
        )
        self._connect_timeout = max(2, math.ceil(connect_timeout_s))
        identifier = sql.Identifier(schema)
        self._sql = {
            name: sql.SQL(text).format(schema=identifier)
            for name, text in (
                ("head", _HEAD),
                ("insert", _INSERT),
                ("select", _SELECT),
                ("seq_of", _SEQ_OF),
                ("set_head", _SET_HEAD),
            )
        }
        self._setup = [sql.SQL(text).format(schema=identifier) for text in _SETUP]
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None
        self._read_lock = asyncio.Lock()
        self._ready = False

    @property
    def schema(self) -> str:
        """The schema that holds the log's tables."""
        return self._schema

    def __repr__(self) -> str:
        return f"PostgresAuditLog('{self._where}', schema={self._schema!r})"

    async def _connect(self, which: str) -> _Connection:
        current: _Connection | None = getattr(self, which)
        if current is not None and not current.closed and not current.broken:
            return current
        if current is not None:
            await current.close()
        conn = await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=self._connect_timeout,
            application_name="keel-audit",
        )
        setattr(self, which, conn)
        if not self._ready:
            await self._ensure_tables(conn)
            self._ready = True
        return conn

    async def _ensure_tables(self, conn: _Connection) -> None:
        names = (f'"{self._schema}".audit_log', f'"{self._schema}".audit_head')
        exists = await (await conn.execute(_EXISTS, names)).fetchone()
        if exists is not None and exists[0]:
            return
        async with conn.transaction():
            for statement in self._setup:
                # Only the head's insert has a parameter: the empty log's hash.
                params = (GENESIS_HASH,) if "audit_head (id" in statement.as_string(conn) else None
                await conn.execute(statement, params)

    async def _call(
        self, action: str, which: str, work: Callable[[_Connection], Awaitable[T]]
    ) -> T:
        try:
            return await work(await self._connect(which))
        except psycopg.Error as exc:
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise StoreError(
                redact(
                    f"the audit log in PostgreSQL at {self._where} (schema {self._schema!r}) "
                    f"could not {action}: {type(exc).__name__}: {text}"
                )
            ) from None

    async def _write(self, entries: list[AuditEntry], at: float) -> list[AuditRecord]:
        async def write(conn: _Connection) -> list[AuditRecord]:
            async with conn.transaction():
                # The head row's lock makes appends from every process take turns.
                row = await (
                    await conn.execute(self._sql["head"] + sql.SQL(" FOR UPDATE"))
                ).fetchone()
                if row is None:
                    raise StoreError(
                        f"the audit log's head row in schema {self._schema!r} is missing: the "
                        "log was tampered with; run keel audit verify"
                    )
                made = chain(AuditHead(int(row[0]), str(row[1])), entries, at)
                async with conn.cursor() as cursor:
                    await cursor.executemany(self._sql["insert"], [row_of(r) for r in made])
                await conn.execute(self._sql["set_head"], (made[-1].seq, made[-1].hash))
            return made

        return await self._call("append", "_writer", write)

    async def _page(self, after_seq: int, limit: int) -> list[AuditRecord]:
        async with self._read_lock:
            return await self._call("read", "_reader", lambda c: _page(self, c, after_seq, limit))

    async def _head(self) -> AuditHead:
        async with self._read_lock:
            return await self._call("read", "_reader", lambda c: _head(self, c))

    def _snapshot(self) -> AbstractAsyncContextManager[Snapshot]:
        return self._view()

    @asynccontextmanager
    async def _view(self) -> AsyncIterator[Snapshot]:
        async with self._read_lock:
            conn = await self._call("verify", "_reader", _same)
            try:
                async with conn.transaction():
                    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    yield _PostgresSnapshot(self, conn)
            except psycopg.Error as exc:
                raise StoreError(
                    redact(
                        f"the audit log in PostgreSQL at {self._where} could not verify: "
                        f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                    )
                ) from None

    async def _close(self) -> None:
        async with self._read_lock:
            for which in ("_writer", "_reader"):
                conn: _Connection | None = getattr(self, which)
                setattr(self, which, None)
                if conn is not None:
                    await conn.close()


async def _same(conn: _Connection) -> _Connection:
    return conn


async def _head(log: PostgresAuditLog, conn: _Connection) -> AuditHead:
    row = await (await conn.execute(log._sql["head"])).fetchone()
    # A missing head row (deleted by hand) must not let an emptied log pass as intact.
    return AuditHead(-1, "") if row is None else AuditHead(int(row[0]), str(row[1]))


async def _page(
    log: PostgresAuditLog, conn: _Connection, after_seq: int, limit: int
) -> list[AuditRecord]:
    rows = await (await conn.execute(log._sql["select"], (after_seq, limit))).fetchall()
    return [record_of(row) for row in rows]


class _PostgresSnapshot:
    def __init__(self, log: PostgresAuditLog, conn: _Connection) -> None:
        self._log = log
        self._conn = conn

    async def head(self) -> AuditHead:
        return await _head(self._log, self._conn)

    async def page(self, after_seq: int, limit: int) -> list[AuditRecord]:
        return await _page(self._log, self._conn, after_seq, limit)

    async def seq_of(self, digest: str) -> int | None:
        row = await (await self._conn.execute(self._log._sql["seq_of"], (digest,))).fetchone()
        return None if row is None else int(row[0])

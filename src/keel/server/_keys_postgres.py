"""API keys in PostgreSQL (psycopg 3, the ``postgres`` extra): a table in the schema of
Keel's store (``keel`` by default), shared by every process on every host.

Like the store, nothing depends on ``search_path`` (the table is written ``schema.table``)
and no statement is prepared on the server, so a pooler in transaction mode works. The table
is created once, under a transaction-level advisory lock, on first use.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from typing import Any

from keel.errors import ConfigurationError, MissingExtraError, StoreError

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import AsyncConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - psycopg is installed where tests run
    raise MissingExtraError(
        package="psycopg", extra="postgres", feature="The PostgreSQL key store"
    ) from exc

from keel._redact import redact
from keel.server._keys import KeyRow, KeyStore
from keel.server._keys_rows import COLUMNS, row_of, values_of

__all__ = ["PostgresKeyStore"]

_Connection = psycopg.AsyncConnection[tuple[Any, ...]]
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SETUP = (
    "SELECT pg_advisory_xact_lock(hashtextextended('keel.api_keys.setup', 0))",
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """CREATE TABLE IF NOT EXISTS {schema}.api_keys (
        key_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        user_name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        roles TEXT NOT NULL,
        name TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION,
        salt TEXT NOT NULL,
        digest TEXT NOT NULL
    )""",
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM {{schema}}.api_keys"  # noqa: S608 - constants
_INSERT = (
    f"INSERT INTO {{schema}}.api_keys ({', '.join(COLUMNS)}) "  # noqa: S608 - constants
    f"VALUES ({', '.join(['%s'] * len(COLUMNS))})"
)
_REVOKE = "UPDATE {schema}.api_keys SET revoked_at = %s WHERE key_id = %s AND revoked_at IS NULL"
_COUNT = "SELECT COUNT(*) FROM {schema}.api_keys"
_SETUP_ATTEMPTS = 3


class PostgresKeyStore(KeyStore):
    """A :class:`KeyStore` in PostgreSQL.

    Args:
        url: A libpq connection string or URL (``postgresql://user:secret@host/db``).
        schema: The schema of the ``api_keys`` table (the store's, ``keel``, by default).
        max_size: The most connections the pool opens.
        connect_timeout_s: How long to wait for a connection.
        clock: Gives ``created_at`` and ``revoked_at``.

    Nothing connects until first use. Errors are :class:`keel.errors.StoreError` naming the
    server, never the password.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = "keel",
        max_size: int = 4,
        connect_timeout_s: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(clock=clock)
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"schema must be a plain identifier (letters, digits and _, not starting with "
                f"a digit, at most 63 characters), got {schema!r}; e.g. schema='keel'"
            )
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # psycopg's message may quote the string, password included: do not chain it.
            raise ConfigurationError(
                "the key store's url is not a valid PostgreSQL connection string or URL; write "
                "it as postgresql://user:password@host:5432/database"
            ) from None
        self._secret = str(params.get("password") or "")
        self._target = (
            f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/"
            f"{params.get('dbname') or '(default database)'}"
        )
        self._url = url
        self._schema = schema
        self._max_size = max_size
        self._connect_timeout_s = connect_timeout_s
        identifier = sql.Identifier(schema)
        self._sql = {
            name: sql.SQL(text).format(schema=identifier)
            for name, text in (
                ("select", _SELECT),
                ("insert", _INSERT),
                ("revoke", _REVOKE),
                ("count", _COUNT),
            )
        }
        self._setup = [sql.SQL(text).format(schema=identifier) for text in _SETUP]
        self._pool: AsyncConnectionPool[_Connection] | None = None
        self._open_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresKeyStore('{self._target}', schema={self._schema!r})"

    async def _ready(self) -> AsyncConnectionPool[_Connection]:
        if self._pool is not None:
            return self._pool
        async with self._open_lock:
            if self._closed:
                raise StoreError(f"{self!r} is closed; open a new key store")
            if self._pool is not None:
                return self._pool
            kwargs: dict[str, Any] = {
                "autocommit": True,
                "prepare_threshold": None,
                "connect_timeout": max(2, math.ceil(self._connect_timeout_s)),
            }
            try:
                await self._create_table(kwargs)
            except psycopg.Error as exc:
                raise self._error("create its table", exc) from None
            pool: AsyncConnectionPool[_Connection] = AsyncConnectionPool(
                self._url,
                kwargs=kwargs,
                min_size=1,
                max_size=self._max_size,
                open=False,
                timeout=self._connect_timeout_s,
                name=f"keel-keys-{self._schema}",
            )
            try:
                await pool.open(wait=True, timeout=self._connect_timeout_s)
            except PoolTimeout as exc:
                await pool.close()
                raise self._error("connect", exc) from None
            self._pool = pool
            return pool

    async def _create_table(self, kwargs: dict[str, Any]) -> None:
        # The store creates the same schema at the same time, under a lock of its own: a
        # "duplicate" from that race means the schema (or table) is there now, so try again.
        for attempt in range(_SETUP_ATTEMPTS):
            conn = await psycopg.AsyncConnection.connect(self._url, **kwargs)
            try:
                async with conn.transaction():
                    for statement in self._setup:
                        await conn.execute(statement)
                return
            except psycopg.errors.UniqueViolation:
                if attempt == _SETUP_ATTEMPTS - 1:
                    raise
            finally:
                await conn.close()

    async def _execute(
        self, action: str, statement: sql.Composed, params: tuple[Any, ...] = ()
    ) -> tuple[int, list[tuple[Any, ...]]]:
        pool = await self._ready()
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(statement, params)
                rows = await cursor.fetchall() if cursor.description is not None else []
                return cursor.rowcount, rows
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(action, exc) from None

    def _error(self, action: str, exc: BaseException) -> StoreError:
        # Never chained: psycopg's messages may quote the connection string.
        reason = redact(" ".join(str(exc).split()) or type(exc).__name__)
        if self._secret:
            reason = reason.replace(self._secret, "***")
        return StoreError(
            f"the API keys in schema '{self._schema}' of PostgreSQL at {self._target} could "
            f"not {action}: {reason}"
        )

    async def _insert(self, row: KeyRow) -> None:
        await self._execute("be written", self._sql["insert"], values_of(row))

    async def _find(self, key_id: str) -> KeyRow | None:
        statement = self._sql["select"] + sql.SQL(" WHERE key_id = %s")
        _, rows = await self._execute("be read", statement, (key_id,))
        return row_of(rows[0]) if rows else None

    async def _all(self) -> list[KeyRow]:
        _, rows = await self._execute("be read", self._sql["select"])
        return [row_of(r) for r in rows]

    async def _revoke(self, key_id: str, at: float) -> bool:
        count, _ = await self._execute("be revoked", self._sql["revoke"], (at, key_id))
        return count > 0

    async def _count(self) -> int:
        _, rows = await self._execute("be counted", self._sql["count"])
        return int(rows[0][0])

    async def aclose(self) -> None:
        async with self._open_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

"""Tables kept beside the journal in the store's PostgreSQL schema (webhook deliveries,
schedules), through psycopg 3 (the ``postgres`` extra).

One connection per component, in autocommit, used by one call at a time under an
``asyncio.Lock``; a connection that broke is replaced on the next call (the call that found
it broken fails: a write is not retried blindly, it may have committed). Like the store, every
table is written ``schema.table`` and nothing is prepared on the server, so a pooler in
transaction mode works. The tables are created once, under a transaction-level advisory lock
so that replicas starting together take turns. Errors are :class:`keel.errors.StoreError`
naming the server and schema, never the password.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from keel.errors import ConfigurationError, MissingExtraError, StoreError

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError(
        package="psycopg", extra="postgres", feature="Tables beside a PostgreSQL store"
    ) from exc

from keel._redact import redact

__all__ = ["Connection", "PostgresTables"]

T = TypeVar("T")
Connection = psycopg.AsyncConnection[tuple[Any, ...]]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresTables:
    """A component's tables in one PostgreSQL schema.

    Args:
        url: A libpq connection string or URL (the store's).
        schema: The schema that holds the tables, the store's (``keel`` by default).
        setup: ``CREATE ... IF NOT EXISTS`` statements with ``{schema}`` where the quoted
            schema name goes.
        what: The component, for messages and the advisory lock's name.
        connect_timeout_s: How long to wait for a connection.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str,
        setup: Sequence[str],
        what: str,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                "schema must be a plain identifier (letters, digits and _, not starting with "
                f"a digit, at most 63 characters), got {schema!r}; e.g. schema='keel'"
            )
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # psycopg's message may quote the string, password included: do not chain it.
            raise ConfigurationError(
                f"{what}: the url is not a valid PostgreSQL connection string or URL; write it "
                "as postgresql://user:password@host:5432/database"
            ) from None
        self._url = url
        self.schema = schema
        self.where = (
            f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/"
            f"{params.get('dbname') or '(default database)'}"
        )
        self._what = what
        self._quoted = sql.Identifier(schema).as_string(None)
        self._setup = [self.sql(s) for s in setup]
        self._connect_timeout = max(2, math.ceil(connect_timeout_s))
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._ready = False
        self._closed = False

    def sql(self, text: str) -> str:
        """``text`` with ``{schema}`` replaced by the quoted schema name."""
        return text.replace("{schema}", self._quoted)

    async def _connect(self) -> Connection:
        current = self._conn
        if current is not None and not current.closed and not current.broken:
            return current
        if current is not None:
            await current.close()
        self._conn = None
        conn = await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=self._connect_timeout,
            application_name="keel",
        )
        if not self._ready:
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"keel.{self._what}.setup",),
                )
                await conn.execute(self.sql("CREATE SCHEMA IF NOT EXISTS {schema}"))
                for statement in self._setup:
                    await conn.execute(statement)
            self._ready = True
        self._conn = conn
        return conn

    async def run(self, action: str, work: Callable[[Connection], Awaitable[T]]) -> T:
        """``work(connection)`` in turn with this component's other calls; ``action`` says
        what it does, for errors ("claim deliveries")."""
        async with self._lock:
            if self._closed:
                raise StoreError(f"{self._what} is closed; open a new one")
            try:
                return await work(await self._connect())
            except psycopg.Error as exc:
                text = " ".join(str(exc).split()) or type(exc).__name__
                raise StoreError(
                    redact(
                        f"{self._what} in PostgreSQL at {self.where} (schema {self.schema!r}) "
                        f"could not {action}: {type(exc).__name__}: {text}"
                    )
                ) from None

    async def close(self) -> None:
        """Close the connection; closing twice is fine."""
        async with self._lock:
            self._closed = True
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

"""The PostgreSQL ledger: its tables and functions in the store's schema, shared by every
process on every host.

``reserve`` (with the settlement riding along), ``settle`` and ``release_run`` are each one
statement in autocommit: one round trip and one transaction (see :mod:`._postgres_sql` for
how the functions lock). Like the store, the ledger keeps no session state (no prepared
statements, every name written ``schema.name``), so it works behind pgbouncer in transaction
mode. Installing the tables and functions takes turns under a transaction-level advisory lock.

A call whose connection was lost is tried again on a fresh one until ``reconnect_timeout_s``:
each call is idempotent (a reservation id is reserved once, settled once), so a retry of a
call that did commit changes nothing. So is a call the server ended to break a deadlock (none
is expected: rows are locked in one order) or a serialization failure.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from keel.errors import ConfigurationError, MissingExtraError, StoreError

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import AsyncConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - psycopg is installed where tests run
    raise MissingExtraError(
        package="psycopg", extra="postgres", feature="The PostgreSQL budget ledger"
    ) from exc

from keel._redact import redact
from keel.budgets._ledger import BudgetLedger, check_request, checked_limit
from keel.budgets._logic import UsageKey, current_windows, labels, statuses_from
from keel.budgets._model import (
    SCOPES,
    Budget,
    BudgetStatus,
    Exhausted,
    Reservation,
    Reserved,
    Scope,
    Settlement,
    Window,
    candidates,
    check_amount,
    check_key,
    check_scope,
    from_nanos,
    to_nanos,
)
from keel.budgets._postgres_sql import (
    INSTALL,
    LIMITS_AND_USAGE,
    RELEASE,
    REMOVE_LIMIT,
    RESERVATIONS,
    RESERVE,
    SET_LIMIT,
    SETTLE,
)

__all__ = ["PostgresBudgetLedger"]

_Connection = psycopg.AsyncConnection[tuple[Any, ...]]
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
# Deadlock detected, serialization failure: the transaction was rolled back; try again.
_TRY_AGAIN = frozenset({"40P01", "40001"})


class PostgresBudgetLedger(BudgetLedger):
    """A :class:`BudgetLedger` in a PostgreSQL database.

    Args:
        url: A libpq connection string or URL (``postgresql://user:secret@host/db``).
        schema: The schema that holds the ledger's tables (the store's, ``keel``, by default).
        min_size: Connections the pool keeps open.
        max_size: The most connections the pool opens.
        connect_timeout_s: How long to wait for a connection.
        reconnect_timeout_s: How long a call keeps trying on fresh connections after its
            connection was lost.

    Nothing connects until first use. Errors are :class:`keel.errors.StoreError` naming the
    server, never the password.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = "keel",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 10.0,
        reconnect_timeout_s: float = 15.0,
    ) -> None:
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigurationError(
                f"schema must be a plain identifier (letters, digits and _, not starting with "
                f"a digit, at most 63 characters), got {schema!r}; e.g. schema='keel'"
            )
        if min_size < 0 or max_size < max(min_size, 1):
            raise ConfigurationError(
                f"need 0 <= min_size <= max_size and max_size >= 1, got min_size={min_size}, "
                f"max_size={max_size}; e.g. min_size=1, max_size=10"
            )
        if not connect_timeout_s > 0 or not reconnect_timeout_s >= 0:
            raise ConfigurationError(
                "connect_timeout_s must be more than 0 and reconnect_timeout_s 0 or more "
                f"seconds, got {connect_timeout_s!r} and {reconnect_timeout_s!r}"
            )
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # The library's message may quote the string, password included: do not chain it.
            raise ConfigurationError(
                "url is not a valid PostgreSQL connection string or URL; write it as "
                "postgresql://user:password@host:5432/database"
            ) from None
        self._secret = str(params.get("password") or "")
        host = params.get("host") or os.environ.get("PGHOST") or "localhost"
        port = params.get("port") or os.environ.get("PGPORT") or "5432"
        self._target = f"{host}:{port}/{params.get('dbname') or '(default database)'}"
        self._url = url
        self._schema = schema
        quoted = sql.Identifier(schema).as_string(None)
        self._install = [s.replace("{schema}", quoted) for s in INSTALL]
        self._reserve, self._settle, self._release, self._set, self._remove = (
            s.replace("{schema}", quoted)
            for s in (RESERVE, SETTLE, RELEASE, SET_LIMIT, REMOVE_LIMIT)
        )
        self._read, self._reservations = (
            s.replace("{schema}", quoted) for s in (LIMITS_AND_USAGE, RESERVATIONS)
        )
        self._min_size, self._max_size = min_size, max_size
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_timeout_s = reconnect_timeout_s
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": None,
            "connect_timeout": max(2, math.ceil(connect_timeout_s)),
        }
        self._pool: AsyncConnectionPool[_Connection] | None = None
        self._open_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresBudgetLedger('{self._target}', schema={self._schema!r})"

    # --- the calls --------------------------------------------------------------------------

    async def reserve(
        self,
        reservation_id: str,
        run_id: str,
        keys: Mapping[str, str],
        amount_usd: float,
        *,
        budgets: Sequence[Budget],
        now: float,
        settle: Settlement | None = None,
    ) -> Reserved | Exhausted:
        request = check_request(
            reservation_id=reservation_id,
            run_id=run_id,
            keys=keys,
            amount_usd=amount_usd,
            budgets=budgets,
            now=now,
            settle=settle,
        )
        code = candidates(budgets)
        sent = []
        for scope in SCOPES:
            key = request.keys.get(scope)
            if key is None:
                continue
            budget = code.get((scope, key)) or code.get((scope, None))
            sent.append(
                {
                    "scope": scope,
                    "key": key,
                    "limit": None if budget is None else to_nanos(budget.limit_usd),
                    "window": None if budget is None else budget.window,
                }
            )
        payload = {
            "id": reservation_id,
            "run": run_id,
            "amount": request.amount,
            "now": request.now,
            "settle_id": None if settle is None else settle.reservation_id,
            "actual": request.actual,
            "starts": current_windows(request.now),
            "candidates": sent,
        }
        row = await self._one("reserve", self._reserve, (json.dumps(payload),))
        answer = cast(dict[str, Any], row[0])
        if answer["status"] == "exhausted":
            scope, key, window, _, limit, source = answer["budget"]
            return Exhausted(
                reservation_id=reservation_id,
                scope=scope,
                key=key,
                window=window,
                limit_usd=from_nanos(int(limit)),
                spent_usd=from_nanos(int(answer["spent"])),
                reserved_usd=from_nanos(int(answer["reserved"])),
                requested_usd=from_nanos(request.amount),
                source=source,
            )
        existing = answer["status"] == "existing"
        return Reserved(
            reservation_id=reservation_id,
            run_id=str(answer["run"]) if existing else run_id,
            amount_usd=from_nanos(int(answer["amount"]) if existing else request.amount),
            budgets=labels(answer["charges"]),
            existing=existing,
            settled=bool(answer.get("settled", False)),
        )

    async def settle(self, reservation_id: str, actual_usd: float, *, now: float) -> None:
        actual = check_amount(actual_usd, "a settled actual cost")
        await self._one("settle", self._settle, (reservation_id, actual, float(now)))

    async def release_run(self, run_id: str) -> int:
        row = await self._one("release a run's reservations", self._release, (run_id,))
        return int(row[0])

    async def set_limit(
        self, scope: Scope, key: str | None, limit_usd: float, window: Window = "day"
    ) -> None:
        scope, key, limit, window = checked_limit(scope, key, limit_usd, window)
        await self._one("set a limit", self._set, (scope, key, window, to_nanos(limit)))

    async def remove_limit(self, scope: Scope, key: str | None) -> bool:
        checked = check_scope(scope)
        row = await self._one("remove a limit", self._remove, (checked, check_key(checked, key)))
        return int(row[0]) > 0

    async def statuses(
        self,
        *,
        budgets: Sequence[Budget] = (),
        now: float,
        keys: Mapping[str, str] | None = None,
    ) -> list[BudgetStatus]:
        starts = current_windows(now)
        rows = await self._all(
            "read budgets", self._read, (list(starts), [starts[w] for w in starts])
        )
        limits: dict[tuple[str, str], tuple[int, Window]] = {}
        usage: dict[UsageKey, tuple[int, int]] = {}
        for kind, scope, key, period, first, second, start in rows:
            if kind == "limit":
                limits[(scope, key)] = (int(first), period)
            else:
                usage[(scope, key, period, float(start))] = (int(first), int(second))
        return statuses_from(limits, usage, budgets, now, keys)

    async def reservations(self, *, run_id: str | None = None) -> list[Reservation]:
        rows = await self._all("read reservations", self._reservations, (run_id, run_id))
        return [
            Reservation(
                reservation_id=r[0],
                run_id=r[1],
                amount_usd=from_nanos(int(r[2])),
                created_at=float(r[3]),
                budgets=labels(r[4]),
            )
            for r in rows
        ]

    async def aclose(self) -> None:
        async with self._open_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # --- connections ------------------------------------------------------------------------

    async def _one(self, action: str, statement: str, params: Sequence[Any]) -> tuple[Any, ...]:
        rows = await self._all(action, statement, params)
        return rows[0]

    async def _all(
        self, action: str, statement: str, params: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + self._reconnect_timeout_s
        delay = 0.02
        while True:
            pool = await self._ready()
            try:
                async with pool.connection() as conn:
                    return await (await conn.execute(statement, params)).fetchall()
            except (psycopg.OperationalError, PoolTimeout) as exc:
                lost = isinstance(exc, PoolTimeout) or exc.sqlstate in (None, *_TRY_AGAIN)
                if not lost or time.monotonic() >= deadline:
                    raise self._error(action, exc) from None
                if pool is not None and exc.sqlstate not in _TRY_AGAIN:
                    await pool.check()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            except psycopg.Error as exc:
                raise self._error(action, exc) from None

    async def _ready(self) -> AsyncConnectionPool[_Connection]:
        pool = self._pool
        if pool is not None:
            return pool
        async with self._open_lock:
            if self._closed:
                raise StoreError(f"{self!r} is closed; open a new ledger")
            if self._pool is not None:
                return self._pool
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, **self._kwargs)
                try:
                    async with conn.transaction():
                        await conn.execute(_LOCK, (f"keel:budgets:install:{self._schema}",))
                        for statement in self._install:
                            await conn.execute(statement)
                finally:
                    await conn.close()
            except psycopg.Error as exc:
                raise self._error("install its tables", exc) from None
            pool = AsyncConnectionPool(
                self._url,
                kwargs=self._kwargs,
                min_size=self._min_size,
                max_size=self._max_size,
                open=False,
                timeout=self._connect_timeout_s,
                name=f"keel-budgets-{self._schema}",
            )
            try:
                await pool.open(wait=True, timeout=self._connect_timeout_s)
            except PoolTimeout as exc:
                await pool.close()
                raise self._error("connect", exc) from None
            self._pool = pool
            return pool

    def _error(self, action: str, exc: BaseException) -> StoreError:
        # Never chained: psycopg's messages may quote the connection string.
        reason = redact(" ".join(str(exc).split()) or type(exc).__name__)
        if self._secret:
            reason = reason.replace(self._secret, "***")
        return StoreError(
            f"the budget ledger in schema '{self._schema}' of PostgreSQL at {self._target} "
            f"failed to {action}: {reason}"
        )

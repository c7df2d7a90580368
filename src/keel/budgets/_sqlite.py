"""The SQLite ledger: its own tables in the store's database file, shared by every process
that opens the file.

Each call is one ``BEGIN IMMEDIATE`` transaction: it takes the database's write lock before
reading anything, so two processes never both read the same spend and both reserve against
it; a process that finds the lock taken waits up to ``busy_timeout_s``. The journal is WAL and
commits are ``synchronous=FULL``: a reservation that ``reserve`` returned survives a power cut.
The standard library's :mod:`sqlite3` runs on worker threads (:func:`asyncio.to_thread`), one
connection per ledger, one transaction at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from keel._sqlite import use_wal
from keel.budgets._ledger import LocalLedger, checked_limit
from keel.budgets._logic import Row, Tables, UsageKey, current_windows, statuses_from
from keel.budgets._model import (
    Budget,
    BudgetStatus,
    Reservation,
    Scope,
    Window,
    check_key,
    check_scope,
    to_nanos,
)
from keel.errors import ConfigurationError, StoreError

__all__ = ["SQLiteBudgetLedger"]

T = TypeVar("T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS budget_limits (
        scope TEXT NOT NULL, key TEXT NOT NULL, period TEXT NOT NULL,
        limit_nanos INTEGER NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (scope, key))""",
    """CREATE TABLE IF NOT EXISTS budget_usage (
        scope TEXT NOT NULL, key TEXT NOT NULL, period TEXT NOT NULL, window_start REAL NOT NULL,
        spent_nanos INTEGER NOT NULL DEFAULT 0, reserved_nanos INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, key, period, window_start))""",
    """CREATE TABLE IF NOT EXISTS budget_reservations (
        reservation_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, amount_nanos INTEGER NOT NULL,
        created_at REAL NOT NULL, settled INTEGER NOT NULL DEFAULT 0, actual_nanos INTEGER,
        settled_at REAL, charges TEXT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS budget_reservations_unsettled
        ON budget_reservations (run_id) WHERE settled = 0""",
)

_ROW = (
    "SELECT reservation_id, run_id, amount_nanos, created_at, settled, charges "
    "FROM budget_reservations"
)


def row_of(found: Sequence[Any]) -> Row:
    """A reservation from its columns; ``charges`` is JSON text."""
    charges = tuple((str(c[0]), str(c[1]), str(c[2]), float(c[3])) for c in json.loads(found[5]))
    return Row(
        str(found[0]), str(found[1]), int(found[2]), float(found[3]), bool(found[4]), charges
    )


class _SQLiteTables:
    """:class:`._logic.Tables` on a connection inside a transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def limit(self, scope: str, key: str) -> tuple[int, Window] | None:
        found = self.conn.execute(
            "SELECT limit_nanos, period FROM budget_limits WHERE scope = ? AND key = ?",
            (scope, key),
        ).fetchone()
        return None if found is None else (int(found[0]), cast(Window, found[1]))

    def reservation(self, reservation_id: str) -> Row | None:
        found = self.conn.execute(f"{_ROW} WHERE reservation_id = ?", (reservation_id,)).fetchone()
        return None if found is None else row_of(found)

    def usage(self, key: UsageKey) -> tuple[int, int]:
        found = self.conn.execute(
            "SELECT spent_nanos, reserved_nanos FROM budget_usage "
            "WHERE scope = ? AND key = ? AND period = ? AND window_start = ?",
            key,
        ).fetchone()
        return (0, 0) if found is None else (int(found[0]), int(found[1]))

    def add(self, key: UsageKey, spent: int, reserved: int) -> None:
        self.conn.execute(
            "INSERT INTO budget_usage (scope, key, period, window_start, spent_nanos, "
            "reserved_nanos) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
            "spent_nanos = spent_nanos + excluded.spent_nanos, "
            "reserved_nanos = reserved_nanos + excluded.reserved_nanos",
            (*key, spent, reserved),
        )

    def insert(self, row: Row) -> None:
        self.conn.execute(
            "INSERT INTO budget_reservations (reservation_id, run_id, amount_nanos, created_at, "
            "charges) VALUES (?, ?, ?, ?, ?)",
            (
                row.reservation_id,
                row.run_id,
                row.amount,
                row.created_at,
                json.dumps([list(c) for c in row.charges]),
            ),
        )

    def mark_settled(self, reservation_id: str, actual: int, now: float) -> None:
        self.conn.execute(
            "UPDATE budget_reservations SET settled = 1, actual_nanos = ?, settled_at = ? "
            "WHERE reservation_id = ?",
            (actual, now, reservation_id),
        )

    def unsettled(self, run_id: str) -> list[Row]:
        found = self.conn.execute(f"{_ROW} WHERE run_id = ? AND settled = 0", (run_id,))
        return [row_of(r) for r in found.fetchall()]

    def delete(self, reservation_id: str) -> None:
        self.conn.execute(
            "DELETE FROM budget_reservations WHERE reservation_id = ?", (reservation_id,)
        )


class SQLiteBudgetLedger(LocalLedger):
    """A :class:`BudgetLedger` in a SQLite file (usually the store's own), safe across
    processes.

    Args:
        path: The database file; its tables (``budget_limits``, ``budget_usage``,
            ``budget_reservations``) are created on first use if missing.
        busy_timeout_s: How long a call waits for another process's write lock.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        if not busy_timeout_s >= 0:
            raise ConfigurationError(
                f"busy_timeout_s must be 0 or more seconds, got {busy_timeout_s!r}; "
                "the default is 30.0"
            )
        self._path = os.fspath(path)
        if self._path in ("", ":memory:"):
            raise ConfigurationError(
                "a SQLite budget ledger needs a file that every process can open; for one "
                "process use open_budget_ledger('memory')"
            )
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteBudgetLedger({self._path!r})"

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self!r} is closed; open a new ledger")
        if self._conn is None:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                use_wal(conn, self._busy_timeout_s)
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout_s * 1000)}")
                conn.execute("BEGIN IMMEDIATE")
                for statement in SCHEMA:
                    conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _transaction(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(
                    f"the budget ledger in SQLite file {self._path} failed to {action}: {exc}"
                    + (
                        f"; another process held the write lock for longer than "
                        f"busy_timeout_s={self._busy_timeout_s:g}"
                        if "locked" in str(exc)
                        else ""
                    )
                ) from exc
            return result

    async def _run(self, action: str, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._transaction, action, work)

    async def _atomic(self, work: Callable[[Tables], T]) -> T:
        return await self._run("update budgets", lambda conn: work(_SQLiteTables(conn)))

    async def set_limit(
        self, scope: Scope, key: str | None, limit_usd: float, window: Window = "day"
    ) -> None:
        scope, key, limit, window = checked_limit(scope, key, limit_usd, window)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO budget_limits (scope, key, period, limit_nanos, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "period = excluded.period, limit_nanos = excluded.limit_nanos, "
                "updated_at = excluded.updated_at",
                (scope, key, window, to_nanos(limit), time.time()),
            )

        await self._run("set a limit", work)

    async def remove_limit(self, scope: Scope, key: str | None) -> bool:
        checked = check_scope(scope)
        pair = (checked, check_key(checked, key))

        def work(conn: sqlite3.Connection) -> bool:
            done = conn.execute("DELETE FROM budget_limits WHERE scope = ? AND key = ?", pair)
            return done.rowcount > 0

        return await self._run("remove a limit", work)

    async def statuses(
        self,
        *,
        budgets: Sequence[Budget] = (),
        now: float,
        keys: Mapping[str, str] | None = None,
    ) -> list[BudgetStatus]:
        starts = current_windows(now)

        def work(
            conn: sqlite3.Connection,
        ) -> tuple[dict[tuple[str, str], tuple[int, Window]], dict[UsageKey, tuple[int, int]]]:
            limits = {
                (str(r[0]), str(r[1])): (int(r[2]), cast(Window, r[3]))
                for r in conn.execute("SELECT scope, key, limit_nanos, period FROM budget_limits")
            }
            usage: dict[UsageKey, tuple[int, int]] = {}
            for window, start in starts.items():
                for r in conn.execute(
                    "SELECT scope, key, spent_nanos, reserved_nanos FROM budget_usage "
                    "WHERE period = ? AND window_start = ?",
                    (window, start),
                ):
                    usage[(str(r[0]), str(r[1]), window, start)] = (int(r[2]), int(r[3]))
            return limits, usage

        limits, usage = await self._run("read budgets", work)
        return statuses_from(limits, usage, budgets, now, keys)

    async def reservations(self, *, run_id: str | None = None) -> list[Reservation]:
        def work(conn: sqlite3.Connection) -> list[Row]:
            where = "WHERE settled = 0" + ("" if run_id is None else " AND run_id = ?")
            params = () if run_id is None else (run_id,)
            found = conn.execute(f"{_ROW} {where} ORDER BY created_at", params)
            return [row_of(r) for r in found.fetchall()]

        return [r.public() for r in await self._run("read reservations", work)]

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                self._closed = True
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close()

        await asyncio.to_thread(close)

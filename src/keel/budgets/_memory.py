"""The in-memory ledger: one process, gone when it exits. For tests and single-process use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

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

__all__ = ["MemoryBudgetLedger"]

T = TypeVar("T")


class _MemoryTables:
    """Dictionaries standing in for the SQL tables."""

    def __init__(self) -> None:
        self.limits: dict[tuple[str, str], tuple[int, Window]] = {}
        self.rows: dict[str, Row] = {}
        self.used: dict[UsageKey, tuple[int, int]] = {}

    def limit(self, scope: str, key: str) -> tuple[int, Window] | None:
        return self.limits.get((scope, key))

    def reservation(self, reservation_id: str) -> Row | None:
        return self.rows.get(reservation_id)

    def usage(self, key: UsageKey) -> tuple[int, int]:
        return self.used.get(key, (0, 0))

    def add(self, key: UsageKey, spent: int, reserved: int) -> None:
        old_spent, old_reserved = self.used.get(key, (0, 0))
        self.used[key] = (old_spent + spent, old_reserved + reserved)

    def insert(self, row: Row) -> None:
        self.rows[row.reservation_id] = row

    def mark_settled(self, reservation_id: str, actual: int, now: float) -> None:
        self.rows[reservation_id] = replace(self.rows[reservation_id], settled=True)

    def unsettled(self, run_id: str) -> list[Row]:
        return [r for r in self.rows.values() if r.run_id == run_id and not r.settled]

    def delete(self, reservation_id: str) -> None:
        del self.rows[reservation_id]


class MemoryBudgetLedger(LocalLedger):
    """A :class:`BudgetLedger` in this process's memory; an :class:`asyncio.Lock` makes each
    call atomic. Settled reservations are kept (so a re-reserve of their id counts nothing)
    until the ledger is dropped."""

    def __init__(self) -> None:
        self._tables = _MemoryTables()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return "MemoryBudgetLedger()"

    async def _atomic(self, work: Callable[[Tables], T]) -> T:
        async with self._lock:
            return work(self._tables)

    async def set_limit(
        self, scope: Scope, key: str | None, limit_usd: float, window: Window = "day"
    ) -> None:
        scope, key, limit, window = checked_limit(scope, key, limit_usd, window)
        async with self._lock:
            self._tables.limits[(scope, key)] = (to_nanos(limit), window)

    async def remove_limit(self, scope: Scope, key: str | None) -> bool:
        checked = check_scope(scope)
        async with self._lock:
            return self._tables.limits.pop((checked, check_key(checked, key)), None) is not None

    async def statuses(
        self,
        *,
        budgets: Sequence[Budget] = (),
        now: float,
        keys: Mapping[str, str] | None = None,
    ) -> list[BudgetStatus]:
        starts = set(current_windows(now).items())
        async with self._lock:
            usage = {k: v for k, v in self._tables.used.items() if (k[2], k[3]) in starts}
            limits = dict(self._tables.limits)
        return statuses_from(limits, usage, budgets, now, keys)

    async def reservations(self, *, run_id: str | None = None) -> list[Reservation]:
        async with self._lock:
            rows = [
                r
                for r in self._tables.rows.values()
                if not r.settled and (run_id is None or r.run_id == run_id)
            ]
        return [r.public() for r in sorted(rows, key=lambda r: r.created_at)]

    async def aclose(self) -> None:
        return None

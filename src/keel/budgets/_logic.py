"""The ledger's rules, written once over :class:`Tables` (rows read and written inside one
atomic section) for the in-memory and SQLite ledgers. PostgreSQL runs the same rules in a
function on the server (:mod:`._postgres_sql`); one contract suite checks all three agree."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from keel.budgets._model import (
    SCOPES,
    WINDOWS,
    Budget,
    BudgetStatus,
    Effective,
    Exhausted,
    Reservation,
    Reserved,
    Scope,
    Settlement,
    Window,
    candidates,
    check_keys,
    check_scope,
    effective,
    from_nanos,
    window_start,
)

__all__ = [
    "Request",
    "Row",
    "Tables",
    "UsageKey",
    "release_in",
    "reserve_in",
    "settle_in",
    "statuses_from",
]

#: A usage row: (scope, key, window, window_start).
UsageKey = tuple[str, str, str, float]


@dataclass(frozen=True, slots=True)
class Row:
    """A reservation as stored; amounts in nano-dollars."""

    reservation_id: str
    run_id: str
    amount: int
    created_at: float
    settled: bool
    charges: tuple[UsageKey, ...]

    def public(self) -> Reservation:
        return Reservation(
            reservation_id=self.reservation_id,
            run_id=self.run_id,
            amount_usd=from_nanos(self.amount),
            created_at=self.created_at,
            budgets=labels(self.charges),
        )


class Tables(Protocol):
    """The ledger's rows, read and written within one atomic section."""

    def limit(self, scope: str, key: str) -> tuple[int, Window] | None: ...
    def reservation(self, reservation_id: str) -> Row | None: ...
    def usage(self, key: UsageKey) -> tuple[int, int]: ...
    def add(self, key: UsageKey, spent: int, reserved: int) -> None: ...
    def insert(self, row: Row) -> None: ...
    def mark_settled(self, reservation_id: str, actual: int, now: float) -> None: ...
    def unsettled(self, run_id: str) -> list[Row]: ...
    def delete(self, reservation_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Request:
    """A checked ``reserve`` call; amounts in nano-dollars."""

    reservation_id: str
    run_id: str
    keys: Mapping[Scope, str]
    amount: int
    budgets: Sequence[Budget]
    now: float
    settle: Settlement | None
    actual: int


def labels(charges: Iterable[UsageKey]) -> tuple[str, ...]:
    """``scope:key`` of each charged usage row."""
    return tuple(f"{c[0]}:{c[1]}" for c in charges)


def applying(
    keys: Mapping[Scope, str], budgets: Sequence[Budget], tables: Tables
) -> list[Effective]:
    """The budgets that apply to ``keys``, most specific scope first."""
    code = candidates(budgets)
    found = []
    for scope in SCOPES:
        key = keys.get(scope)
        if key is not None:
            chosen = effective(scope, key, tables.limit(scope, key), code)
            if chosen is not None:
                found.append(chosen)
    return found


def settle_in(tables: Tables, reservation_id: str, actual: int, now: float) -> None:
    """Turn a reservation into spend; a settled or unknown (released) id changes nothing."""
    row = tables.reservation(reservation_id)
    if row is None or row.settled:
        return
    for charge in row.charges:
        tables.add(charge, actual, -row.amount)
    tables.mark_settled(reservation_id, actual, now)


def reserve_in(tables: Tables, request: Request) -> Reserved | Exhausted:
    """Settle ``request.settle``, then reserve against every budget that applies, or none."""
    if request.settle is not None:
        settle_in(tables, request.settle.reservation_id, request.actual, request.now)
    existing = tables.reservation(request.reservation_id)
    if existing is not None:
        return Reserved(
            reservation_id=existing.reservation_id,
            run_id=existing.run_id,
            amount_usd=from_nanos(existing.amount),
            budgets=labels(existing.charges),
            existing=True,
            settled=existing.settled,
        )
    charges: list[UsageKey] = []
    for budget in applying(request.keys, request.budgets, tables):
        charge: UsageKey = (
            budget.scope,
            budget.key,
            budget.window,
            window_start(budget.window, request.now),
        )
        spent, reserved = tables.usage(charge)
        if spent + reserved + request.amount > budget.limit:
            return Exhausted(
                reservation_id=request.reservation_id,
                scope=budget.scope,
                key=budget.key,
                window=budget.window,
                limit_usd=from_nanos(budget.limit),
                spent_usd=from_nanos(spent),
                reserved_usd=from_nanos(reserved),
                requested_usd=from_nanos(request.amount),
                source=budget.source,
            )
        charges.append(charge)
    for charge in charges:
        tables.add(charge, 0, request.amount)
    row = Row(
        request.reservation_id,
        request.run_id,
        request.amount,
        request.now,
        False,
        tuple(charges),
    )
    tables.insert(row)
    return Reserved(
        reservation_id=row.reservation_id,
        run_id=row.run_id,
        amount_usd=from_nanos(row.amount),
        budgets=labels(row.charges),
    )


def release_in(tables: Tables, run_id: str) -> int:
    """Drop the run's unsettled reservations; how many there were."""
    rows = tables.unsettled(run_id)
    for row in rows:
        for charge in row.charges:
            tables.add(charge, 0, -row.amount)
        tables.delete(row.reservation_id)
    return len(rows)


def current_windows(now: float) -> dict[str, float]:
    """The start of each window containing ``now``."""
    return {window: window_start(window, now) for window in WINDOWS}


def statuses_from(
    limits: Mapping[tuple[str, str], tuple[int, Window]],
    usage: Mapping[UsageKey, tuple[int, int]],
    budgets: Sequence[Budget],
    now: float,
    keys: Mapping[str, str] | None,
) -> list[BudgetStatus]:
    """The status of each budget that applies to ``keys`` (``None``: every budget with a
    stored limit, a keyed code budget, or spend this window under a scope-wide one), given
    the stored ``limits`` and the ``usage`` rows of the current windows."""
    code = candidates(budgets)
    starts = current_windows(now)
    pairs: set[tuple[Scope, str]]
    if keys is not None:
        pairs = set(check_keys(keys).items())
    else:
        wide = {s for s, k in code if k is None}
        named = [*limits, *((u[0], u[1]) for u in usage if u[0] in wide)]
        pairs = {(check_scope(s), k) for s, k in named}
        pairs |= {(s, k) for s, k in code if k is not None}
    found = []
    for scope, key in pairs:
        chosen = effective(scope, key, limits.get((scope, key)), code)
        if chosen is None:
            continue
        start = starts[chosen.window]
        spent, reserved = usage.get((scope, key, chosen.window, start), (0, 0))
        found.append(
            BudgetStatus(
                scope=scope,
                key=key,
                window=chosen.window,
                window_start=start,
                limit_usd=from_nanos(chosen.limit),
                spent_usd=from_nanos(spent),
                reserved_usd=from_nanos(reserved),
                remaining_usd=from_nanos(max(0, chosen.limit - spent - reserved)),
                source=chosen.source,
            )
        )
    found.sort(key=lambda s: (SCOPES.index(s.scope), s.key))
    return found

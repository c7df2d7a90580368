"""Cost budgets that cannot be overspent: a reservation ledger shared by every process.

::

    ledger = open_budget_ledger("keel.db")  # or "memory", or "postgresql://..."
    budgets = [Budget("tenant", 100.0, window="day"), Budget("global", 5_000.0, window="month")]
    answer = await ledger.reserve(
        "run_1:call_1", "run_1", {"agent": "support", "tenant": "acme"},
        worst_case_cost(price, estimate_tokens(prompt), max_output_tokens=1_000),
        budgets=budgets, now=time.time(),
    )
    if isinstance(answer, Exhausted):
        ...  # pause the run: answer.message says which budget and how to raise it
    # ... make the call; then settle its real cost (or pass settle= to the next reserve)
    await ledger.settle("run_1:call_1", actual_usd, now=time.time())

- :class:`Budget` (:mod:`keel.budgets._model`): a limit per scope (``agent``, ``user``,
  ``tenant``, ``global``), for every key of the scope or one, per UTC hour, day, month or in
  total. Limits stored in the ledger (:meth:`BudgetLedger.set_limit`, ``keel budgets set``)
  beat the code's.
- :class:`BudgetLedger`: ``reserve`` checks every budget that applies and reserves against all
  or none, atomically across processes; idempotent by reservation id. In memory
  (:class:`MemoryBudgetLedger`), SQLite (:class:`SQLiteBudgetLedger`, ``BEGIN IMMEDIATE``) and
  PostgreSQL (:class:`PostgresBudgetLedger`, one round trip per call).
- :func:`worst_case_cost` and :func:`estimate_tokens` (:mod:`keel.budgets._estimate`): what a
  call may cost at most, before it is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.budgets._estimate import (
    estimate_tokens,
    worst_case_cost,
)
from keel.budgets._ledger import BudgetLedger
from keel.budgets._memory import MemoryBudgetLedger
from keel.budgets._model import (
    Budget,
    BudgetStatus,
    Exhausted,
    Reservation,
    Reserved,
    Scope,
    Settlement,
    Window,
    window_start,
)
from keel.budgets._open import open_budget_ledger
from keel.budgets._sqlite import SQLiteBudgetLedger

if TYPE_CHECKING:
    from keel.budgets._postgres import PostgresBudgetLedger

__all__ = [
    "Budget",
    "BudgetLedger",
    "BudgetStatus",
    "Exhausted",
    "MemoryBudgetLedger",
    "PostgresBudgetLedger",
    "Reservation",
    "Reserved",
    "SQLiteBudgetLedger",
    "Scope",
    "Settlement",
    "Window",
    "estimate_tokens",
    "open_budget_ledger",
    "window_start",
    "worst_case_cost",
]


def __getattr__(name: str) -> Any:
    # psycopg is an optional extra: import the PostgreSQL ledger only when it is asked for.
    if name == "PostgresBudgetLedger":
        from keel.budgets._postgres import PostgresBudgetLedger

        return PostgresBudgetLedger
    raise AttributeError(f"module 'keel.budgets' has no attribute {name!r}")

"""The runtime's methods for budgets and the audit log (a part of :class:`keel.Runtime`, kept
in a module of its own)."""

from __future__ import annotations

from collections.abc import Mapping

from keel._runtime.governance import Governance
from keel.audit import AuditLog
from keel.budgets import BudgetLedger, BudgetStatus, Reservation, Scope, Window
from keel.errors import UsageError
from keel.ports import Clock

__all__ = ["GovernanceMethods"]


class GovernanceMethods:
    """Budgets and the audit log; see :class:`keel.Runtime`."""

    clock: Clock
    _governance: Governance

    @property
    def budget_ledger(self) -> BudgetLedger | None:
        """Where this runtime keeps its budgets (``None``: budgets are off)."""
        return self._governance.ledger

    @property
    def audit_log(self) -> AuditLog | None:
        """This runtime's audit log (``None``: off)."""
        return None if self._governance.auditor is None else self._governance.auditor.log

    def _ledger(self) -> BudgetLedger:
        ledger = self._governance.ledger
        if ledger is None:
            raise UsageError(
                "budgets are off for this runtime: pass budgets=[...] (or budgets=[] to use "
                "only limits stored with keel budgets set) to Runtime"
            )
        return ledger

    async def set_budget(
        self,
        scope: Scope,
        key: str | None,
        limit_usd: float,
        *,
        window: Window = "day",
        by: str | None = None,
    ) -> None:
        """Store a budget limit for one key of a scope (it beats the code's budgets for that
        key), e.g. raise tenant ``"acme"``'s daily budget; runs paused by the old limit continue
        once resumed. ``key`` is ``None`` for the global scope. Recorded in the audit log,
        with ``by``."""
        await self._ledger().set_limit(scope, key, limit_usd, window)
        await self._audit_budget(scope, key, by, limit_usd=limit_usd, window=window)

    async def remove_budget(self, scope: Scope, key: str | None, *, by: str | None = None) -> bool:
        """Remove a stored limit (the code's budgets apply again); whether one existed."""
        removed = await self._ledger().remove_limit(scope, key)
        await self._audit_budget(scope, key, by, removed=removed)
        return removed

    async def _audit_budget(
        self, scope: str, key: str | None, by: str | None, **details: object
    ) -> None:
        auditor = self._governance.auditor
        if auditor is not None:
            await auditor.record(
                "budget.changed",
                f"{scope}:{key if key is not None else '*'}",
                user=by,
                details=dict(details),
            )

    async def budget_statuses(self, *, keys: Mapping[str, str] | None = None) -> list[BudgetStatus]:
        """Every budget's limit, spend and reservations in its current window (the code's and
        the stored ones), optionally only those that apply to ``keys``."""
        return await self._ledger().statuses(
            budgets=self._governance.budgets, now=self.clock.now(), keys=keys
        )

    async def budget_reservations(self, *, run_id: str | None = None) -> list[Reservation]:
        """Reservations not settled yet (calls under way, or cut short by a crash)."""
        return await self._ledger().reservations(run_id=run_id)

"""Wiring the runtime's governance: spending (the run's cap, budgets), rate limits and the
audit log, around the kernel.

The budget ledger and the audit log live in the store's database (their own tables beside
the journal's) unless the caller passes its own; the rate limiter is per process, or shared
through Redis when ``KEEL_REDIS_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keel._core.pricing import PriceTable
from keel._runtime.auditing import Auditor
from keel._runtime.kernel import Kernel
from keel._runtime.spending import Spending
from keel._runtime.throttling import Throttling
from keel._settings import KeelSettings
from keel.audit import AuditLog, open_audit_log
from keel.budgets import Budget, BudgetLedger, open_budget_ledger
from keel.errors import ConfigurationError
from keel.ports import Clock, Store
from keel.resilience import LocalRateLimiter, RateLimit, RateLimiter

__all__ = ["Governance", "store_location"]


def store_location(store: Store, opened_from: str | None) -> str | None:
    """Where ``store``'s database is, for tables that live beside its journal; ``None`` for
    a store object whose location cannot be told (pass the ledger or log yourself)."""
    if opened_from is not None:
        return opened_from
    from keel.stores import MemoryStore, SQLiteStore

    if isinstance(store, MemoryStore):
        return "memory"
    if isinstance(store, SQLiteStore):
        return store.path
    return None


class Governance:
    """The spending rules, rate limits and audit log of one runtime."""

    def __init__(
        self,
        *,
        kernel: Kernel,
        settings: KeelSettings,
        location: str | None,
        clock: Clock,
        prices: PriceTable,
        budgets: Sequence[Budget] | None,
        budget_ledger: BudgetLedger | None,
        rate_limits: Sequence[RateLimit],
        rate_limiter: RateLimiter | None,
        audit: AuditLog | bool,
    ) -> None:
        self._owned: list[Any] = []
        self._schema = settings.db_schema
        ledger = budget_ledger
        if ledger is None and budgets is not None:
            ledger = open_budget_ledger(self._where(location, "budgets"), schema=self._schema)
            self._owned.append(ledger)
        self.ledger = ledger
        self.budgets: tuple[Budget, ...] = tuple(budgets or ())
        self.spending = Spending(prices=prices, clock=clock, budgets=self.budgets, ledger=ledger)
        limiter = rate_limiter
        if rate_limits and limiter is None:
            limiter = self._limiter(settings, clock)
            self._owned.append(limiter)
        self.limiter = limiter
        if limiter is not None and rate_limits:
            throttling = Throttling(rate_limits, limiter)
            kernel.call_guards.append(throttling.guard_for)
        # Rate limits first: a call that waits for room holds no budget reservation meanwhile.
        kernel.call_guards.append(self.spending.guard_for)
        log: AuditLog | None
        if audit is True:
            log = open_audit_log(self._where(location, "audit"), schema=self._schema)
            self._owned.append(log)
        elif audit is False:
            log = None
        else:
            log = audit
        self.auditor = None if log is None else Auditor(log)
        if self.auditor is not None:
            kernel.journal_hooks.append(self.auditor)

    @staticmethod
    def _where(location: str | None, what: str) -> str:
        if location is None:
            raise ConfigurationError(
                f"the runtime cannot tell where this store's database is, to keep the {what} "
                "beside it: pass "
                + (
                    "budget_ledger=keel.budgets.open_budget_ledger(url)"
                    if what == "budgets"
                    else "audit=keel.audit.open_audit_log(url)"
                )
                + " to Runtime"
            )
        return location

    @staticmethod
    def _limiter(settings: KeelSettings, clock: Clock) -> RateLimiter:
        if settings.redis_url:
            from keel.resilience import RedisRateLimiter

            return RedisRateLimiter(settings.redis_url)
        return LocalRateLimiter(clock=clock)

    async def aclose(self) -> None:
        """Write what the audit log holds, then close what this runtime opened (ledger,
        limiter, log)."""
        if self.auditor is not None:
            await self.auditor.flush()
        for owned in reversed(self._owned):
            await owned.aclose()
        self._owned = []

"""The ledger's interface, and the base of the ledgers whose rules run in this process
(memory and SQLite): each call is one atomic section over :class:`._logic.Tables`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from keel.budgets._logic import Request, Tables, release_in, reserve_in, settle_in
from keel.budgets._model import (
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
    check_keys,
    check_limit,
    check_scope,
    check_window,
)
from keel.errors import ConfigurationError

__all__ = ["BudgetLedger", "LocalLedger", "check_request"]

T = TypeVar("T")


class BudgetLedger(ABC):
    """Spend and reservations against budgets, shared by every process that opens the same
    store. Reserve before a model call (its worst-case cost), settle after (its real cost).

    The guarantee: spent plus reserved never exceeds a budget's limit because of a
    reservation. ``reserve`` checks every budget that applies and reserves against all of them
    or none, atomically, even across processes. A reservation that is never settled (the
    process died) keeps counting at its full amount. The limit can be passed only by a
    settlement whose actual cost is above what was reserved (see the guide).
    """

    @abstractmethod
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
        """Reserve ``amount_usd`` against every budget that applies to ``keys``, or none.

        Args:
            reservation_id: Names this reservation. Asking again with the same id (a resumed
                run) returns the existing reservation (``existing=True``) and counts nothing.
            run_id: The run it is for (see :meth:`release_run`).
            keys: The call's key in each scope, e.g. ``{"agent": "support", "user": "u-7",
                "tenant": "acme"}``; the ``global`` budget always applies.
            amount_usd: The call's worst-case cost (:func:`keel.budgets.worst_case_cost`).
            budgets: The budgets defined in code; limits stored in the ledger beat them.
            now: The time of the call (a UNIX time): picks the windows charged.
            settle: An earlier reservation to settle first, in the same atomic step (and on
                PostgreSQL in the same round trip). It is settled even when this reservation is
                refused.

        Returns :class:`Reserved`, or :class:`Exhausted` naming the first budget (most
        specific scope first) that cannot cover the amount.
        """

    @abstractmethod
    async def settle(self, reservation_id: str, actual_usd: float, *, now: float) -> None:
        """Turn a reservation into spend of ``actual_usd`` (below or above what was reserved)
        in the windows it was reserved in. Settling twice, or settling a released (or unknown)
        reservation, changes nothing."""

    @abstractmethod
    async def release_run(self, run_id: str) -> int:
        """Drop the run's unsettled reservations, spending nothing (the run ended and those
        calls were never made); how many were dropped. Settled spend stays."""

    @abstractmethod
    async def set_limit(
        self, scope: Scope, key: str | None, limit_usd: float, window: Window = "day"
    ) -> None:
        """Store a limit for one key of a scope, beating any budget defined in code for it.
        Takes effect at the next ``reserve`` of every process: raising it lets paused runs go
        on once resumed. ``key`` is ``None`` (or ``"global"``) for the global scope."""

    @abstractmethod
    async def remove_limit(self, scope: Scope, key: str | None) -> bool:
        """Forget a stored limit (code budgets apply again); whether there was one."""

    @abstractmethod
    async def statuses(
        self,
        *,
        budgets: Sequence[Budget] = (),
        now: float,
        keys: Mapping[str, str] | None = None,
    ) -> list[BudgetStatus]:
        """Each budget's limit, spend and reservations in the window that contains ``now``:
        those that apply to ``keys``, or (``None``) every stored limit, every keyed code
        budget, and every key with spend this window under a scope-wide one."""

    @abstractmethod
    async def reservations(self, *, run_id: str | None = None) -> list[Reservation]:
        """Unsettled reservations (of ``run_id``, or of every run), oldest first."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close connections; closing twice is fine."""


def check_request(
    *,
    reservation_id: str,
    run_id: str,
    keys: Mapping[str, str],
    amount_usd: float,
    budgets: Sequence[Budget],
    now: float,
    settle: Settlement | None,
) -> Request:
    """A ``reserve`` call's arguments, checked, amounts in nano-dollars."""
    for name, value in (("reservation_id", reservation_id), ("run_id", run_id)):
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{name} must be non-empty text, got {value!r}")
    if settle is not None and not isinstance(settle, Settlement):
        raise ConfigurationError(f"settle must be a Settlement or None, got {settle!r}")
    if settle is not None and settle.reservation_id == reservation_id:
        raise ConfigurationError(
            f"reserve({reservation_id!r}) cannot settle itself; settle the previous call's "
            "reservation"
        )
    candidates(budgets)  # refuse duplicates before anything is written
    actual = 0 if settle is None else check_amount(settle.actual_usd, "a settled actual cost")
    return Request(
        reservation_id=reservation_id,
        run_id=run_id,
        keys=check_keys(keys),
        amount=check_amount(amount_usd, "a reserved amount"),
        budgets=budgets,
        now=float(now),
        settle=settle,
        actual=actual,
    )


def checked_limit(
    scope: Scope, key: str | None, limit_usd: float, window: Window
) -> tuple[Scope, str, float, Window]:
    """``set_limit``'s arguments, checked."""
    checked = check_scope(scope)
    return checked, check_key(checked, key), check_limit(limit_usd), check_window(window)


class LocalLedger(BudgetLedger):
    """A ledger whose rules run here, each call in one atomic section (:meth:`_atomic`)."""

    @abstractmethod
    async def _atomic(self, work: Callable[[Tables], T]) -> T:
        """Run ``work`` on the tables, alone and all-or-nothing."""

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
        return await self._atomic(lambda tables: reserve_in(tables, request))

    async def settle(self, reservation_id: str, actual_usd: float, *, now: float) -> None:
        actual = check_amount(actual_usd, "a settled actual cost")
        await self._atomic(lambda tables: settle_in(tables, reservation_id, actual, now))

    async def release_run(self, run_id: str) -> int:
        return await self._atomic(lambda tables: release_in(tables, run_id))

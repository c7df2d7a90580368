"""What a run may spend: its own cap (``Limits.max_cost_usd``) and the shared budgets.

Before each model call the call's worst case is computed (:func:`keel._runtime.call_guards.
worst_case`): its prompt, counted conservatively, and ``max_tokens`` of output on the most
expensive model that may serve it. A model with no known price is refused under a cap or a
budget: an unknown cost would let spending pass unseen.

- The run's cap is checked against what the run has spent, from its journal (one writer per
  run, so no store round trip).
- The budgets (per agent, user, tenant, and global, over windows) are shared by every run and
  every process: the worst case is *reserved* in the ledger atomically, against every budget
  that applies, or the call is not made. The call's real cost settles the reservation, in the
  same round trip as the next call's reservation (or when the driver stops), so budget checks
  cost one store round trip per model call.

A refusal pauses the run, naming the cap or the budget and how to raise it; resuming after
raising it continues the run.
"""

from __future__ import annotations

from collections.abc import Sequence

from keel._core.eventbase import FINISHED, ErrorInfo
from keel._core.limits import LimitBreach
from keel._core.messages import ModelResponse
from keel._core.pricing import PriceTable
from keel._core.state import RunState
from keel._runtime.call_guards import CallGuard, CallPlan, worst_case
from keel.budgets import Budget, BudgetLedger, Exhausted, Settlement
from keel.errors import ModelError
from keel.ports import Clock

__all__ = ["RunSpending", "Spending"]

# Reservations for the same step after the first was settled (a call made, then a crash
# before its answer was journaled) get a suffix; past this many, the step is not retried.
_MAX_RESERVATIONS_PER_STEP = 16


class Spending:
    """The runtime's spending rules; one :class:`RunSpending` guard per driven run."""

    def __init__(
        self,
        *,
        prices: PriceTable,
        clock: Clock,
        budgets: Sequence[Budget] = (),
        ledger: BudgetLedger | None = None,
    ) -> None:
        self.prices = prices
        self.clock = clock
        self.budgets = tuple(budgets)
        self.ledger = ledger

    def guard_for(self, state: RunState) -> RunSpending | None:
        """The guard of one run, or ``None`` when neither a cap nor a budget applies."""
        if state.limits.max_cost_usd is None and self.ledger is None:
            return None
        return RunSpending(self, state)


def keys_of(state: RunState) -> dict[str, str]:
    """The run's key in each budget scope (the ``global`` budget always applies)."""
    keys = {"agent": state.agent}
    if state.user is not None:
        keys["user"] = state.user
    if state.tenant is not None:
        keys["tenant"] = state.tenant
    return keys


class RunSpending(CallGuard):
    """The cap and budgets around one run's model calls (see the module docstring)."""

    def __init__(self, spending: Spending, state: RunState) -> None:
        self._spending = spending
        self._state = state
        self._reservation: tuple[str, float] | None = None
        # A driver that takes over (after a crash) settles the run's latest answered call
        # again: settling is idempotent, and the crash may have come before it was settled.
        self._unsettled: Settlement | None = (
            Settlement(
                reservation_id=f"{state.run_id}:{state.step}", actual_usd=state.last_call_cost
            )
            if state.step > 0 and state.last_call_cost is not None
            else None
        )

    async def before(self, plan: CallPlan) -> ErrorInfo | None:
        spending = self._spending
        state = plan.state
        cost, unpriced = worst_case(plan, spending.prices)
        if cost is None:
            return ErrorInfo(
                code="budget.unpriced",
                message=f"model '{unpriced}' has no known price, and this run's spending is "
                "capped: configure its price with Runtime(prices={"
                f"'{unpriced}': Price(input_per_mtok=..., output_per_mtok=...)}}) and resume "
                "the run",
            )
        cap = state.limits.max_cost_usd
        if cap is not None:
            spent = state.cost_usd
            if spent is None or spent + cost > cap:
                breach = LimitBreach(
                    limit="max_cost_usd",
                    allowed=cap,
                    observed=round(spent or 0.0, 6),
                    detail=f"the next model call may cost up to ${cost:.6f}",
                )
                return ErrorInfo(code=breach.code, message=breach.message)
        ledger = spending.ledger
        if ledger is None:
            return None
        return await self._reserve(ledger, plan, cost)

    async def _reserve(self, ledger: BudgetLedger, plan: CallPlan, cost: float) -> ErrorInfo | None:
        state = plan.state
        for attempt in range(_MAX_RESERVATIONS_PER_STEP):
            suffix = "" if attempt == 0 else f":{attempt}"
            reservation_id = f"{state.run_id}:{plan.step}{suffix}"
            settle, self._unsettled = self._unsettled, None
            answer = await ledger.reserve(
                reservation_id,
                state.run_id,
                keys_of(state),
                cost,
                budgets=self._spending.budgets,
                now=self._spending.clock.now(),
                settle=settle,
            )
            if isinstance(answer, Exhausted):
                return ErrorInfo(code="budget.exhausted", message=answer.message)
            if answer.existing and answer.settled:
                continue  # this step's call was made and paid for before a crash: a new one
            self._reservation = (reservation_id, answer.amount_usd)
            return None
        return ErrorInfo(
            code="budget.exhausted",
            message=f"step {plan.step} was tried {_MAX_RESERVATIONS_PER_STEP} times; resume "
            "the run to try again",
        )

    async def after(
        self,
        plan: CallPlan,
        response: ModelResponse | None,
        cost: float | None,
        error: ModelError | None = None,
    ) -> None:
        if self._reservation is None or response is None:
            return  # a failed call keeps its reservation for the next attempt of the step
        reservation_id, reserved = self._reservation
        self._reservation = None
        # An unknown cost settles at the worst case: never less than may have been spent.
        self._unsettled = Settlement(
            reservation_id=reservation_id, actual_usd=reserved if cost is None else cost
        )

    async def finish(self) -> None:
        ledger = self._spending.ledger
        if ledger is None:
            return
        settle, self._unsettled = self._unsettled, None
        if settle is not None:
            await ledger.settle(
                settle.reservation_id, settle.actual_usd, now=self._spending.clock.now()
            )
        if self._state.status in FINISHED:
            await ledger.release_run(self._state.run_id)

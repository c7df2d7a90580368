"""The ledger's contract, on every kind of ledger."""

from __future__ import annotations

import pytest

from keel.budgets import Budget, BudgetLedger, Exhausted, Reserved, Settlement, window_start
from keel.errors import ConfigurationError

# 2026-03-14 15:30:00 UTC, in the middle of an hour, a day and a month.
NOW = 1773502200.0
HOUR, DAY = 3600.0, 86400.0
KEYS = {"agent": "support", "user": "u-7", "tenant": "acme"}


async def reserve(
    ledger: BudgetLedger,
    rid: str,
    amount: float,
    budgets: list[Budget],
    *,
    now: float = NOW,
    run_id: str = "run_1",
    keys: dict[str, str] | None = None,
    settle: Settlement | None = None,
) -> Reserved | Exhausted:
    return await ledger.reserve(
        rid, run_id, KEYS if keys is None else keys, amount, budgets=budgets, now=now, settle=settle
    )


async def test_a_reservation_counts_against_every_budget_that_applies(
    ledger: BudgetLedger,
) -> None:
    budgets = [Budget("tenant", 10.0), Budget("agent", 5.0), Budget("global", 100.0)]
    answer = await reserve(ledger, "r1", 1.5, budgets)
    assert isinstance(answer, Reserved)
    assert answer.budgets == ("agent:support", "tenant:acme", "global:global")
    assert not answer.existing
    statuses = {(s.scope, s.key): s for s in await ledger.statuses(budgets=budgets, now=NOW)}
    assert set(statuses) == {("agent", "support"), ("tenant", "acme"), ("global", "global")}
    for status in statuses.values():
        assert status.reserved_usd == 1.5
        assert status.spent_usd == 0
    assert statuses[("agent", "support")].remaining_usd == 3.5
    assert statuses[("agent", "support")].window_start == window_start("day", NOW)


async def test_a_refusal_names_the_budget_and_reserves_against_none(ledger: BudgetLedger) -> None:
    budgets = [Budget("tenant", 10.0), Budget("agent", 1.0)]
    assert isinstance(await reserve(ledger, "r1", 0.75, budgets), Reserved)
    answer = await reserve(ledger, "r2", 0.5, budgets)
    assert isinstance(answer, Exhausted)
    assert (answer.scope, answer.key, answer.window, answer.source) == (
        "agent",
        "support",
        "day",
        "code",
    )
    assert (answer.limit_usd, answer.spent_usd, answer.reserved_usd, answer.requested_usd) == (
        1.0,
        0.0,
        0.75,
        0.5,
    )
    assert "keel budgets set agent support" in answer.message
    tenant = await ledger.statuses(budgets=budgets, now=NOW, keys={"tenant": "acme"})
    assert [(s.scope, s.reserved_usd) for s in tenant] == [("tenant", 0.75)]
    assert [r.reservation_id for r in await ledger.reservations()] == ["r1"]


async def test_amounts_add_up_exactly_to_the_limit(ledger: BudgetLedger) -> None:
    budgets = [Budget("global", 1.0)]
    answers = [await reserve(ledger, f"r{i}", 0.1, budgets) for i in range(11)]
    assert [isinstance(a, Reserved) for a in answers] == [True] * 10 + [False]


async def test_reserving_the_same_id_again_counts_nothing(ledger: BudgetLedger) -> None:
    budgets = [Budget("tenant", 10.0)]
    await reserve(ledger, "r1", 2.0, budgets)
    again = await reserve(ledger, "r1", 3.0, budgets)
    assert isinstance(again, Reserved)
    assert again.existing
    assert not again.settled
    assert again.amount_usd == 2.0
    [status] = await ledger.statuses(budgets=budgets, now=NOW)
    assert status.reserved_usd == 2.0
    await ledger.settle("r1", 1.0, now=NOW)
    settled = await reserve(ledger, "r1", 2.0, budgets)
    assert isinstance(settled, Reserved)
    assert settled.existing
    assert settled.settled
    [status] = await ledger.statuses(budgets=budgets, now=NOW)
    assert (status.spent_usd, status.reserved_usd) == (1.0, 0.0)


async def test_settling_records_the_actual_cost_once(ledger: BudgetLedger) -> None:
    budgets = [Budget("user", 10.0)]
    await reserve(ledger, "r1", 2.0, budgets)
    await reserve(ledger, "r2", 1.0, budgets)
    await ledger.settle("r1", 2.5, now=NOW)  # above the reservation: the actual is recorded
    await ledger.settle("r1", 2.5, now=NOW)
    await ledger.settle("r2", 0.25, now=NOW)
    await ledger.settle("unknown", 5.0, now=NOW)
    [status] = await ledger.statuses(budgets=budgets, now=NOW)
    assert (status.spent_usd, status.reserved_usd, status.remaining_usd) == (2.75, 0.0, 7.25)
    assert await ledger.reservations() == []


async def test_a_reservation_settles_the_previous_one_in_the_same_call(
    ledger: BudgetLedger,
) -> None:
    budgets = [Budget("agent", 3.0)]
    await reserve(ledger, "r1", 2.0, budgets)
    # Without the settlement r2 would not fit (2 + 2 > 3); with it, 0.5 + 2 does.
    answer = await reserve(ledger, "r2", 2.0, budgets, settle=Settlement("r1", 0.5))
    assert isinstance(answer, Reserved)
    [status] = await ledger.statuses(budgets=budgets, now=NOW)
    assert (status.spent_usd, status.reserved_usd) == (0.5, 2.0)
    assert [r.reservation_id for r in await ledger.reservations()] == ["r2"]


async def test_a_refused_reservation_still_settles_the_previous_one(ledger: BudgetLedger) -> None:
    budgets = [Budget("agent", 3.0)]
    await reserve(ledger, "r1", 2.0, budgets)
    answer = await reserve(ledger, "r2", 2.9, budgets, settle=Settlement("r1", 0.5))
    assert isinstance(answer, Exhausted)
    assert (answer.spent_usd, answer.reserved_usd) == (0.5, 0.0)
    [status] = await ledger.statuses(budgets=budgets, now=NOW)
    assert (status.spent_usd, status.reserved_usd) == (0.5, 0.0)


@pytest.mark.parametrize(
    ("window", "later"),
    [("hour", HOUR), ("day", DAY), ("month", 31 * DAY)],
)
async def test_windows_roll_over(ledger: BudgetLedger, window: str, later: float) -> None:
    budgets = [Budget("tenant", 1.0, window=window)]  # type: ignore[arg-type]
    await reserve(ledger, "r1", 1.0, budgets)
    assert isinstance(await reserve(ledger, "r2", 0.5, budgets, now=NOW + 60), Exhausted)
    assert isinstance(await reserve(ledger, "r3", 1.0, budgets, now=NOW + later), Reserved)
    [status] = await ledger.statuses(budgets=budgets, now=NOW + later)
    assert status.window_start == window_start(window, NOW + later)  # type: ignore[arg-type]
    assert status.reserved_usd == 1.0
    # Settling r1 in the next window charges the window it was reserved in.
    await ledger.settle("r1", 0.25, now=NOW + later)
    [earlier] = await ledger.statuses(budgets=budgets, now=NOW)
    assert (earlier.spent_usd, earlier.reserved_usd) == (0.25, 0.0)


async def test_a_total_budget_never_resets(ledger: BudgetLedger) -> None:
    budgets = [Budget("user", 1.0, window="total")]
    await reserve(ledger, "r1", 1.0, budgets)
    assert isinstance(await reserve(ledger, "r2", 0.5, budgets, now=NOW + 400 * DAY), Exhausted)


async def test_a_keyed_budget_beats_the_scope_wide_one(ledger: BudgetLedger) -> None:
    budgets = [Budget("tenant", 1.0), Budget("tenant", 50.0, key="acme")]
    assert isinstance(await reserve(ledger, "r1", 20.0, budgets), Reserved)
    other = {"tenant": "globex"}
    assert isinstance(await reserve(ledger, "r2", 2.0, budgets, keys=other), Exhausted)
    assert isinstance(await reserve(ledger, "r3", 1.0, budgets, keys=other), Reserved)
    listed = {s.key: s.limit_usd for s in await ledger.statuses(budgets=budgets, now=NOW)}
    assert listed == {"acme": 50.0, "globex": 1.0}


async def test_a_stored_limit_beats_the_code_and_can_be_raised(ledger: BudgetLedger) -> None:
    budgets = [Budget("tenant", 100.0, key="acme")]
    await ledger.set_limit("tenant", "acme", 1.0, window="month")
    assert isinstance(await reserve(ledger, "r1", 1.0, budgets), Reserved)
    refused = await reserve(ledger, "r2", 1.0, budgets)
    assert isinstance(refused, Exhausted)
    assert (refused.source, refused.window, refused.limit_usd) == ("stored", "month", 1.0)
    await ledger.set_limit("tenant", "acme", 2.0, window="month")
    assert isinstance(await reserve(ledger, "r2", 1.0, budgets), Reserved)
    [status] = await ledger.statuses(budgets=budgets, now=NOW)
    assert (status.source, status.window, status.reserved_usd) == ("stored", "month", 2.0)
    assert await ledger.remove_limit("tenant", "acme")
    assert not await ledger.remove_limit("tenant", "acme")
    [status] = await ledger.statuses(budgets=budgets, now=NOW)
    assert (status.source, status.window, status.limit_usd) == ("code", "day", 100.0)


async def test_a_stored_limit_applies_without_any_code_budget(ledger: BudgetLedger) -> None:
    await ledger.set_limit("global", None, 0.5)
    assert isinstance(await reserve(ledger, "r1", 1.0, []), Exhausted)
    [status] = await ledger.statuses(now=NOW)
    assert (status.scope, status.key, status.source) == ("global", "global", "stored")


async def test_release_run_drops_only_that_runs_unsettled_reservations(
    ledger: BudgetLedger,
) -> None:
    budgets = [Budget("global", 10.0)]
    await reserve(ledger, "a1", 1.0, budgets, run_id="run_a")
    await reserve(ledger, "a2", 2.0, budgets, run_id="run_a")
    await reserve(ledger, "b1", 4.0, budgets, run_id="run_b")
    await ledger.settle("a1", 0.5, now=NOW)
    assert [r.reservation_id for r in await ledger.reservations(run_id="run_a")] == ["a2"]
    assert await ledger.release_run("run_a") == 1
    assert await ledger.release_run("run_a") == 0
    [status] = await ledger.statuses(budgets=budgets, now=NOW)
    assert (status.spent_usd, status.reserved_usd) == (0.5, 4.0)
    [left] = await ledger.reservations()
    assert (left.reservation_id, left.run_id, left.amount_usd) == ("b1", "run_b", 4.0)
    assert left.budgets == ("global:global",)


async def test_no_budget_means_nothing_is_counted(ledger: BudgetLedger) -> None:
    answer = await reserve(ledger, "r1", 1_000.0, [])
    assert isinstance(answer, Reserved)
    assert answer.budgets == ()
    assert await ledger.statuses(now=NOW) == []


async def test_bad_requests_are_refused_before_anything_is_written(ledger: BudgetLedger) -> None:
    with pytest.raises(ConfigurationError, match="scope must be one of"):
        await reserve(ledger, "r1", 1.0, [], keys={"team": "x"})
    with pytest.raises(ConfigurationError, match="a reserved amount"):
        await reserve(ledger, "r1", -1.0, [])
    with pytest.raises(ConfigurationError, match="two budgets"):
        await reserve(ledger, "r1", 1.0, [Budget("user", 1.0), Budget("user", 2.0)])
    with pytest.raises(ConfigurationError, match="cannot settle itself"):
        await reserve(ledger, "r1", 1.0, [], settle=Settlement("r1", 1.0))
    assert await ledger.reservations() == []

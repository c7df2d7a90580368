"""RequireApproval, MaxCalls and ArgumentLimit: their verdicts on hand-built requests, and
reasons that name tools and fields but never an argument's value."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from keel import CheckResult
from keel.errors import ConfigurationError
from keel.policies import ArgumentLimit, MaxCalls, RequireApproval
from tests.policies.requests import tool_call

BIG_REFUNDS = RequireApproval(
    "refund",
    when=lambda args: args["amount_usd"] > 100,
    reason="refunds over $100 need a second pair of eyes",
)


async def test_require_approval_escalates_only_the_calls_its_condition_picks() -> None:
    big = await BIG_REFUNDS(tool_call("refund", amount_usd=250))
    small = await BIG_REFUNDS(tool_call("refund", amount_usd=20))
    other = await BIG_REFUNDS(tool_call("lookup_order", amount_usd=250))

    assert big == CheckResult.escalate("refunds over $100 need a second pair of eyes")
    assert (small, other) == (CheckResult.allow(), CheckResult.allow())
    assert BIG_REFUNDS.name == "require_approval:refund"


async def test_require_approval_without_a_condition_escalates_every_call() -> None:
    every = RequireApproval("delete_user")
    assert await every(tool_call("delete_user")) == CheckResult.escalate(
        "delete_user needs a person's approval"
    )


async def test_a_failing_condition_denies_without_quoting_the_value() -> None:
    strict = RequireApproval("refund", when=lambda args: float(args["note"]) > 1)
    answer = await strict(tool_call("refund", note="card 4111"))
    assert answer.verdict == "deny"
    assert answer.reason == (
        "the approval condition on refund failed (ValueError), so the call was refused"
    )


async def test_max_calls_denies_past_n_calls_across_the_turns_of_a_run() -> None:
    deletes = MaxCalls("delete_user", 2)
    first = tool_call("delete_user", previous=["lookup_order"])
    second = tool_call("delete_user", previous=["delete_user", "lookup_order"])
    third = tool_call("delete_user", previous=["delete_user", "lookup_order", "delete_user"])

    assert await deletes(first) == CheckResult.allow()
    assert await deletes(second) == CheckResult.allow()
    assert await deletes(third) == CheckResult.deny(
        "delete_user may be called at most 2 times per run, and it was already called 2 times"
    )
    assert await deletes(tool_call("lookup_order", previous=["delete_user"] * 5)) == (
        CheckResult.allow()
    )


async def test_max_calls_may_escalate_each_call_past_the_limit() -> None:
    once = MaxCalls("refund", 1, verdict="escalate")
    assert await once(tool_call("refund")) == CheckResult.allow()
    assert await once(tool_call("refund", previous=["refund", "refund"])) == CheckResult.escalate(
        "refund may be called at most 1 time per run without a person's approval; this is call 3"
    )
    assert (await MaxCalls("refund", 0)(tool_call("refund"))).verdict == "deny"


async def test_argument_limit_gives_the_bound_never_the_value() -> None:
    cap = ArgumentLimit("refund", "amount_usd", max=500, min=1)

    over = await cap(tool_call("refund", amount_usd=734.25))
    under = await cap(tool_call("refund", amount_usd=0.5))

    assert over == CheckResult.deny("amount_usd of refund may be at most 500")
    assert under == CheckResult.deny("amount_usd of refund must be at least 1")
    assert await cap(tool_call("refund", amount_usd=500)) == CheckResult.allow()
    assert await cap(tool_call("refund", other=9999)) == CheckResult.allow()  # not given
    assert await cap(tool_call("lookup_order", amount_usd=9999)) == CheckResult.allow()
    assert cap.name == "argument_limit:refund.amount_usd"


async def test_argument_limit_refuses_what_is_not_a_number_and_may_escalate() -> None:
    cap = ArgumentLimit("refund", "amount_usd", max=0.5, verdict="escalate")
    assert await cap(tool_call("refund", amount_usd="lots")) == CheckResult.deny(
        "amount_usd of refund must be a number to be checked"
    )
    assert await cap(tool_call("refund", amount_usd=True)) == CheckResult.deny(
        "amount_usd of refund must be a number to be checked"
    )
    assert await cap(tool_call("refund", amount_usd=3)) == CheckResult.escalate(
        "amount_usd of refund may be at most 0.5"
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RequireApproval("no such tool"), "tool must be a tool's name"),
        (lambda: RequireApproval("refund", when=True), "must be a function of the arguments"),  # type: ignore[arg-type]
        (lambda: RequireApproval("refund", reason=" "), "reason=...) must be some text"),
        (lambda: MaxCalls("refund", -1), "must be a whole number >= 0, got -1"),
        (lambda: MaxCalls("refund", 1.5), "must be a whole number >= 0, got 1.5"),  # type: ignore[arg-type]
        (lambda: MaxCalls("refund", 1, per="day"), "per=...) must be 'run'"),  # type: ignore[arg-type]
        (lambda: MaxCalls("refund", 1, verdict="ask"), "verdict must be 'deny' or 'escalate'"),  # type: ignore[arg-type]
        (lambda: ArgumentLimit("refund", "amount_usd"), "give max=..., min=... or both"),
        (lambda: ArgumentLimit("refund", "", max=1), "field must be an argument's name"),
        (lambda: ArgumentLimit("refund", "x", max=float("inf")), "max must be a finite number"),
        (lambda: ArgumentLimit("refund", "x", min=5, max=1), "min (5) is above max (1)"),
    ],
)
def test_bad_configuration_says_what_to_fix(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        build()

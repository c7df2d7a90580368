"""Static checks of keel.policies' types: mypy (run on tests/) must accept every line.

Nothing here runs at test time; ``assert_type`` is checked by the type checker.
"""

from __future__ import annotations

from typing import assert_type

from keel import Check, CheckRequest, CheckResult
from keel.policies import ArgumentLimit, Grant, MaxCalls, RequireApproval, ToolPermissions, policy


def brief(request: CheckRequest) -> bool | str | None:
    return None


async def full(request: CheckRequest) -> CheckResult:
    return CheckResult.allow()


def every_policy_is_a_check() -> None:
    assert_type(policy(brief), Check)
    assert_type(policy(full, name="full"), Check)
    assert_type(policy(points=["tool_call"], reason="no")(brief), Check)
    checks: list[Check] = [
        ToolPermissions(default=Grant.none(), roles={"viewer": Grant(read_only=True)}),
        RequireApproval("refund", when=lambda args: args["amount_usd"] > 100),
        MaxCalls("delete_user", 1, verdict="escalate"),
        ArgumentLimit("refund", "amount_usd", max=500),
    ]
    assert_type(checks, list[Check])

"""The runtime's audit log: check decisions, requests for people and their decisions,
spending refusals, budget changes and deletions are recorded with who they concern, a digest of
the arguments (never the arguments), and the chain verifies."""

from __future__ import annotations

import json
from pathlib import Path

from keel import Agent, KeelSettings, Limits, Runtime, tool
from keel.audit import AuditRecord, digest_arguments, open_audit_log
from keel.budgets import Budget
from keel.policies import RequireApproval, ToolPermissions
from keel.testing import ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


@tool(side_effects="write")
def refund(order_id: str, amount_usd: float) -> str:
    """Refund an order."""
    return f"refunded {amount_usd} on {order_id}"


async def records(runtime: Runtime) -> list[AuditRecord]:
    log = runtime.audit_log
    assert log is not None
    return await log.records()


async def test_decisions_approvals_budget_changes_and_deletions_are_audited(
    tmp_path: Path,
) -> None:
    db = tmp_path / "keel.db"
    agent = Agent(
        name="desk",
        model=ScriptedModel(
            [call("refund", order_id="o-1", amount_usd=900), "refunded", "second answer"]
        ),
        tools=[refund],
        checks=[
            ToolPermissions(),
            RequireApproval("refund", when=lambda args: args["amount_usd"] > 500),
        ],
    )
    async with Runtime(
        store=db, settings=NO_MODELS, audit=True, budgets=[], agents=[agent]
    ) as runtime:
        paused = await runtime.run(agent, "refund o-1 please", tenant="acme", user="ann")
        assert paused.status == "awaiting_approval"
        [pending] = await runtime.pending_calls(paused.run_id)
        asked = pending.call.arguments
        done = await runtime.approve(paused.run_id, by="lee", agent=agent)
        assert done.status == "completed"
        await runtime.set_budget("tenant", "acme", 10.0, by="finance")
        await runtime.delete_runs([done.run_id])

        found = await records(runtime)
        actions = [r.action for r in found]
        assert actions == [
            "policy.decided",
            "approval.requested",
            "approval.decided",
            "budget.changed",
            "run.deleted",
        ]
        decided, requested, approved, budget, deleted = found
        assert (decided.decision, decided.tenant, decided.user) == ("escalate", "acme", "ann")
        assert decided.arguments_digest == digest_arguments(asked)
        assert requested.arguments_digest == digest_arguments(asked)
        assert (approved.decision, approved.user) == ("approve", "lee")
        assert (budget.subject, budget.user) == ("tenant:acme", "finance")
        assert deleted.subject == done.run_id
        assert all("o-1" not in json.dumps(r.to_dict()) for r in found)
        assert (await runtime.audit_log.verify()).ok  # type: ignore[union-attr]

    # The log is in the store's database: another process verifies it.
    log = open_audit_log(db)
    try:
        verification = await log.verify()
        assert verification.ok
        assert verification.checked == 5
    finally:
        await log.aclose()


async def test_spending_refusals_are_audited() -> None:
    agent = Agent(name="desk", model=ScriptedModel(["hi"], name="acme:unknown"))
    async with Runtime(store="memory", settings=NO_MODELS, audit=True) as runtime:
        paused = await runtime.run(agent, "hi", limits=Limits(max_cost_usd=1.0), tenant="acme")
        assert paused.status == "paused"
        [refusal] = await records(runtime)
        assert refusal.action == "budget.refused"
        assert refusal.decision == "budget.unpriced"
        assert refusal.tenant == "acme"


async def test_no_audit_log_unless_asked(tmp_path: Path) -> None:
    async with Runtime(store=tmp_path / "k.db", settings=NO_MODELS) as runtime:
        assert runtime.audit_log is None
    async with Runtime(
        store="memory", settings=NO_MODELS, budgets=[Budget("global", 1.0)]
    ) as runtime:
        assert runtime.budget_ledger is not None

"""Policies in real runs: an escalation a person approves (the tool runs once) or rejects (the
model reads why), refusals the model reads, and exact replays of runs they decided on."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keel import Agent, CheckRequest, KeelSettings, RunContext, Runtime, tool
from keel.events import ChecksDecided
from keel.messages import ToolResultMessage
from keel.policies import ArgumentLimit, Grant, MaxCalls, RequireApproval, ToolPermissions, policy
from keel.stores import SQLiteStore
from keel.testing import MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})
BIG_REFUNDS = RequireApproval(
    "refund",
    when=lambda args: args["amount_usd"] > 100,
    reason="refunds over $100 need a second pair of eyes",
)


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


@tool(idempotent=True, side_effects="read")
def lookup_order(order_id: str) -> str:
    """Find an order."""
    return f"order {order_id}: delivered"


@tool(idempotent=True, side_effects="write")
def refund(ctx: RunContext[list[str]], order_id: str, amount_usd: float) -> str:
    """Refund an order."""
    ctx.deps.append(f"refund {order_id}")
    return f"refunded order {order_id}"


@tool
def delete_user(ctx: RunContext[list[str]], user_id: str) -> str:
    """Delete a user."""
    ctx.deps.append(f"delete {user_id}")
    return "deleted"


def results(model: ScriptedModel, turn: int) -> list[ToolResultMessage]:
    """The tool results the model was sent on its ``turn``-th request (from 0)."""
    return [m for m in model.requests[turn].messages if isinstance(m, ToolResultMessage)]


async def decided(store: Any, run_id: str) -> list[ChecksDecided]:
    return [e for e in await store.load(run_id) if isinstance(e, ChecksDecided)]


async def test_an_approved_escalation_runs_the_tool_exactly_once(store: MemoryStore) -> None:
    done_so_far: list[str] = []
    model = ScriptedModel([call("refund", order_id="7", amount_usd=250), "Refunded."])
    agent = Agent(name="desk", model=model, tools=[refund], deps=done_so_far, checks=[BIG_REFUNDS])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    waiting = await runtime.run(agent, "Refund order 7, $250")

    assert (waiting.status, done_so_far) == ("awaiting_approval", [])
    [pending] = waiting.pending
    assert (pending.kind, pending.check) == ("escalated", "require_approval:refund")
    assert pending.reason == "refunds over $100 need a second pair of eyes"
    done = await runtime.approve(waiting.run_id, by="ana")
    assert (done.status, done.output) == ("completed", "Refunded.")
    assert done_so_far == ["refund 7"]
    [answer] = await decided(store, done.run_id)
    assert [(r.check, r.verdict) for r in answer.results] == [
        ("require_approval:refund", "escalate")
    ]


async def test_a_rejected_escalation_never_runs_and_the_model_reads_why(
    store: MemoryStore,
) -> None:
    done_so_far: list[str] = []
    model = ScriptedModel([call("refund", order_id="7", amount_usd=250), "Sorry."])
    agent = Agent(name="desk", model=model, tools=[refund], deps=done_so_far, checks=[BIG_REFUNDS])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])
    waiting = await runtime.run(agent, "Refund order 7, $250")

    rejected = await runtime.reject(waiting.run_id, by="sec", reason="needs a photo of the damage")

    assert (rejected.status, done_so_far) == ("completed", [])
    [told] = results(model, 1)
    assert told.is_error
    assert "a person (sec) rejected this call: needs a photo of the damage" in told.content


async def test_refusals_reach_the_model_with_the_policy_and_its_reason(
    store: MemoryStore,
) -> None:
    done_so_far: list[str] = []
    model = ScriptedModel(
        [
            [
                call("lookup_order", order_id="7"),
                call("delete_user", user_id="u1"),
                call("refund", order_id="7", amount_usd=900),
            ],
            "I can only look orders up.",
        ]
    )
    permissions = ToolPermissions(agents={"desk": Grant(tools={"lookup_order"})})
    # refund is refused by the permissions: the limit after them is never asked.
    cap = ArgumentLimit("refund", "amount_usd", max=500)
    agent = Agent(
        name="desk",
        model=model,
        tools=[lookup_order, refund, delete_user],
        deps=done_so_far,
        checks=[permissions, cap],
    )

    result = await Runtime(store=store, settings=NO_MODELS).run(agent, "Clean up order 7")

    assert (result.status, done_so_far) == ("completed", [])
    told = {m.name: m for m in results(model, 1)}
    assert not told["lookup_order"].is_error
    assert told["delete_user"].is_error
    assert told["delete_user"].content == (
        "Error: check 'tool_permissions' denied this: you may not call delete_user: agent "
        "'desk' does not include it"
    )
    assert told["refund"].content == (
        "Error: check 'tool_permissions' denied this: you may not call refund: agent 'desk' "
        "does not include it"
    )
    assert "900" not in told["refund"].content
    rounds = {d.subject: d for d in await decided(store, result.run_id)}
    assert [r.check for r in rounds[told["refund"].tool_call_id].results] == ["tool_permissions"]


async def test_an_argument_limit_refuses_and_the_model_reads_the_bound(
    store: MemoryStore,
) -> None:
    done_so_far: list[str] = []
    model = ScriptedModel(
        [
            call("refund", order_id="7", amount_usd=900),
            call("refund", order_id="7", amount_usd=400),
            "Refunded $400.",
        ]
    )
    cap = ArgumentLimit("refund", "amount_usd", max=500)
    agent = Agent(name="desk", model=model, tools=[refund], deps=done_so_far, checks=[cap])

    result = await Runtime(store=store, settings=NO_MODELS).run(agent, "Refund $900")

    assert (result.status, done_so_far) == ("completed", ["refund 7"])
    [told] = results(model, 1)
    assert told.content == (
        "Error: check 'argument_limit:refund.amount_usd' denied this: amount_usd of refund may "
        "be at most 500"
    )


def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a SQLite file."""
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(conn.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}


async def test_replay_of_a_run_policies_decided_on_is_exact_and_asks_none(
    tmp_path: Path,
) -> None:
    asked: list[str] = []

    @policy(points=["tool_call"])
    def audit(request: CheckRequest) -> None:
        asked.append(request.call.name if request.call else "")

    done_so_far: list[str] = []
    model = ScriptedModel(
        [
            [call("lookup_order", order_id="7"), call("delete_user", user_id="u1")],
            call("refund", order_id="7", amount_usd=250),
            "Refunded; I may not delete users.",
        ]
    )
    agent = Agent(
        name="desk",
        model=model,
        tools=[lookup_order, refund, delete_user],
        deps=done_so_far,
        checks=[
            audit,
            ToolPermissions(agents={"desk": Grant(tools={"lookup_order", "refund"})}),
            BIG_REFUNDS,
            MaxCalls("refund", 3),
        ],
    )
    db = tmp_path / "keel.db"
    async with SQLiteStore(db) as store:
        runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])
        waiting = await runtime.run(agent, "Refund order 7 and delete my account")
        done = await runtime.approve(waiting.run_id, by="ana")
        assert (done.status, done_so_far) == ("completed", ["refund 7"])
        verdicts = [(d.deciding_check, d.verdict) for d in await decided(store, done.run_id)]
        assert verdicts == [
            ("max_calls:refund", "allow"),
            ("tool_permissions", "deny"),
            ("require_approval:refund", "escalate"),
        ]
        asked_before = list(asked)
        before = tables(db)

        replayed = await runtime.replay(done.run_id)

        assert replayed.identical, replayed.differences
        assert tables(db) == before
    assert asked == asked_before == ["lookup_order", "delete_user", "refund"]


# -- who a run is for, and the calls before -------------------------------------------------


async def test_a_read_only_role_keeps_a_run_from_writing(store: MemoryStore) -> None:
    done_so_far: list[str] = []
    model = ScriptedModel(
        [[call("lookup_order", order_id="7"), call("refund", order_id="7", amount_usd=5)], "ok"]
    )
    agent = Agent(
        name="desk",
        model=model,
        tools=[lookup_order, refund],
        deps=done_so_far,
        checks=[ToolPermissions(roles={"viewer": Grant(read_only=True)})],
    )
    who: dict[str, Any] = {"tenant": "acme", "user": "ana@example.com", "roles": {"viewer"}}
    result = await Runtime(store=store, settings=NO_MODELS).run(agent, "Refund order 7", **who)

    told = {m.name: m for m in results(model, 1)}
    assert not told["lookup_order"].is_error  # read: allowed to a viewer
    assert "you may not call refund: role 'viewer' is read-only" in told["refund"].content
    assert (result.status, done_so_far) == ("completed", [])


async def test_max_calls_counts_the_calls_of_earlier_turns(store: MemoryStore) -> None:
    done_so_far: list[str] = []
    model = ScriptedModel(
        [
            call("refund", order_id="1", amount_usd=5),
            [
                call("refund", order_id="2", amount_usd=5),
                call("refund", order_id="3", amount_usd=5),
            ],
            "Two refunds done.",
        ]
    )
    agent = Agent(
        name="desk",
        model=model,
        tools=[refund],
        deps=done_so_far,
        checks=[MaxCalls("refund", 2)],
    )
    result = await Runtime(store=store, settings=NO_MODELS).run(agent, "Refund 1, 2 and 3")

    assert (result.status, done_so_far) == ("completed", ["refund 1", "refund 2"])
    told = {m.tool_call_id: m for m in results(model, 2)}
    refused = [m for m in told.values() if m.is_error]
    assert len(refused) == 1
    assert "refund may be called at most 2 times per run" in refused[0].content

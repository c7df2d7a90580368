"""People in the loop: calls that need approval pause the run; approve, reject or edit them
from Python (also after a restart); who decided and when is in the journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keel import Agent, RunContext, Runtime, tool
from keel._core.events import CallDecided
from keel.errors import UsageError
from keel.testing import FakeClock, MemoryStore, ScriptedModel, call

Refunds = list[tuple[str, float]]


def refund_tool(refunds: Refunds) -> Any:
    @tool(requires_approval=lambda args: args["amount_usd"] > 100)
    def refund(ctx: RunContext[None], order_id: str, amount_usd: float) -> str:
        """Refund an order."""
        refunds.append((order_id, amount_usd))
        return f"refunded ${amount_usd:g} on order {order_id}"

    return refund


def desk(refunds: Refunds, *script: Any) -> Agent[str]:
    return Agent(name="desk", model=ScriptedModel(list(script)), tools=[refund_tool(refunds)])


async def test_a_small_refund_runs_without_asking() -> None:
    refunds: Refunds = []
    agent = desk(refunds, call("refund", order_id="1", amount_usd=20), "Done.")
    result = await Runtime(store=MemoryStore()).run(agent, "Refund $20 on order 1")
    assert (result.status, refunds) == ("completed", [("1", 20.0)])


async def test_a_big_refund_waits_for_approval_then_runs() -> None:
    refunds: Refunds = []
    agent = desk(refunds, call("refund", order_id="1", amount_usd=500), "Refunded.")
    clock = FakeClock(start=1_800_000_000.0)
    runtime = Runtime(store=MemoryStore(), agents=[agent], clock=clock)

    waiting = await runtime.run(agent, "Refund $500 on order 1")

    assert waiting.status == "awaiting_approval"
    [pending] = waiting.pending
    assert (pending.kind, pending.call.arguments) == (
        "approval",
        '{"order_id": "1", "amount_usd": 500}',
    )
    assert refunds == []
    assert await runtime.pending_calls(waiting.run_id) == [pending]

    clock.advance(60)
    done = await runtime.approve(waiting.run_id, by="ana@example.com")

    assert (done.status, done.output, refunds) == ("completed", "Refunded.", [("1", 500.0)])
    [decided] = [e for e in await runtime.store.load(done.run_id) if isinstance(e, CallDecided)]
    assert (decided.decision, decided.by, decided.at) == (
        "approve",
        "ana@example.com",
        1_800_000_060.0,
    )


async def test_a_rejected_refund_is_explained_to_the_model() -> None:
    refunds: Refunds = []
    model = ScriptedModel([call("refund", order_id="1", amount_usd=500), "I cannot refund that."])
    agent = Agent(name="desk", model=model, tools=[refund_tool(refunds)])
    runtime = Runtime(store=MemoryStore(), agents=[agent])
    waiting = await runtime.run(agent, "Refund $500")

    done = await runtime.reject(waiting.run_id, by="ana", reason="over the $100 policy")

    assert done.status == "completed"
    assert refunds == []
    told = model.requests[1].messages[-1]
    assert told.role == "tool"
    assert "a person (ana) rejected this call: over the $100 policy" in str(told)


async def test_edited_arguments_are_validated_and_used() -> None:
    refunds: Refunds = []
    model = ScriptedModel([call("refund", order_id="1", amount_usd=500), "Refunded $90."])
    agent = Agent(name="desk", model=model, tools=[refund_tool(refunds)])
    runtime = Runtime(store=MemoryStore(), agents=[agent])
    waiting = await runtime.run(agent, "Refund $500")

    with pytest.raises(UsageError, match=r"the edited arguments are not valid: .*amount_usd"):
        await runtime.approve(waiting.run_id, by="ana", arguments={"order_id": "1"})
    done = await runtime.approve(
        waiting.run_id, by="ana", arguments={"order_id": "1", "amount_usd": 90}
    )

    assert refunds == [("1", 90.0)]
    assert done.output == "Refunded $90."
    # The model sees the call as it ran.
    assert '"amount_usd": 90' in model.requests[1].messages[-2].tool_calls[0].arguments  # type: ignore[union-attr]


async def test_each_pending_call_needs_its_own_decision() -> None:
    refunds: Refunds = []
    agent = desk(
        refunds,
        [
            call("refund", order_id="1", amount_usd=200),
            call("refund", order_id="2", amount_usd=300),
        ],
        "Both done.",
    )
    runtime = Runtime(store=MemoryStore(), agents=[agent])
    waiting = await runtime.run(agent, "Refund both")
    first, second = (p.call.id for p in waiting.pending)

    with pytest.raises(UsageError, match="name the call with call_id"):
        await runtime.approve(waiting.run_id, by="ana")
    still = await runtime.approve(waiting.run_id, first, by="ana")
    assert still.status == "awaiting_approval"
    assert [p.call.id for p in still.pending] == [second]
    assert refunds == []

    done = await runtime.reject(waiting.run_id, second, by="ana", reason="duplicate")
    assert (done.status, refunds) == ("completed", [("1", 200.0)])


async def test_decisions_are_refused_when_they_make_no_sense() -> None:
    refunds: Refunds = []
    agent = desk(refunds, call("refund", order_id="1", amount_usd=500), "ok")
    runtime = Runtime(store=MemoryStore(), agents=[agent])
    waiting = await runtime.run(agent, "Refund $500")

    with pytest.raises(UsageError, match="say who decides"):
        await runtime.approve(waiting.run_id, by=" ")
    with pytest.raises(UsageError, match="was never started"):
        await runtime.confirm(waiting.run_id, by="ana", result="done")
    with pytest.raises(UsageError, match="is not waiting for a decision"):
        await runtime.approve(waiting.run_id, "call_nope", by="ana")
    done = await runtime.approve(waiting.run_id, by="ana")
    with pytest.raises(UsageError, match="has no call waiting for a decision"):
        await runtime.approve(done.run_id, by="ana")


async def test_a_decision_without_resuming_queues_the_run_for_a_worker() -> None:
    refunds: Refunds = []
    agent = desk(refunds, call("refund", order_id="1", amount_usd=500), "ok")
    runtime = Runtime(store=MemoryStore(), agents=[agent])
    waiting = await runtime.run(agent, "Refund $500")

    decided = await runtime.approve(waiting.run_id, by="ana", resume=False)

    # The decision returns at once; the run is durable in the queue, and nothing ran yet.
    assert (decided.status, decided.pending, refunds) == ("queued", (), [])
    await runtime.worker().run(until_idle=True)
    assert (await runtime.result(waiting.run_id)).status == "completed"
    assert refunds == [("1", 500.0)]


async def test_approval_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    refunds: Refunds = []
    async with Runtime(store=db) as first:
        waiting = await first.run(desk(refunds, call("refund", order_id="1", amount_usd=500)), "Go")
    assert waiting.status == "awaiting_approval"

    agent = desk(refunds, "Refunded after the restart.")
    async with Runtime(store=db, agents=[agent]) as second:
        done = await second.approve(waiting.run_id, by="ana")

    assert (done.status, done.output) == ("completed", "Refunded after the restart.")
    assert refunds == [("1", 500.0)]

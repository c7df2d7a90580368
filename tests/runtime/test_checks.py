"""Checks as steps: policies and guardrails consulted on the input, before model calls, before
tool calls and on tool results. Their answers (allow, deny, modify, escalate) are journaled,
replay reads them back instead of asking again, and escalations go through the approvals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from keel import (
    Agent,
    CheckRequest,
    CheckResult,
    KeelSettings,
    Limits,
    RunContext,
    Runtime,
    check,
    tool,
)
from keel.events import ChecksDecided
from keel.messages import ToolResultMessage, UserMessage
from keel.testing import MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


@tool(idempotent=True, side_effects="read")
def lookup(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: shipped to 12 Main St, card 4111 1111 1111 1111"


@tool
def refund(ctx: RunContext[list[float]], amount_usd: float) -> str:
    """Refund."""
    ctx.deps.append(amount_usd)
    return f"refunded {amount_usd}"


async def decided(store: MemoryStore, run_id: str) -> list[ChecksDecided]:
    return [e for e in await store.load(run_id) if isinstance(e, ChecksDecided)]


async def test_an_input_check_redacts_what_the_model_sees_and_is_journaled(
    store: MemoryStore,
) -> None:
    @check(points=["input"])
    def no_emails(request: CheckRequest) -> CheckResult:
        assert request.text is not None
        return CheckResult.modify(request.text.replace("ana@example.com", "[email]"), "PII")

    model = ScriptedModel(["Noted."])
    agent = Agent(name="desk", model=model, checks=[no_emails])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    result = await runtime.run(agent, "I am ana@example.com, help")

    sent = [m.content for m in model.requests[0].messages if isinstance(m, UserMessage)]
    assert sent == ["I am [email], help"]
    [answer] = await decided(store, result.run_id)
    assert (answer.point, answer.verdict, answer.reason) == ("input", "modify", "PII")
    assert [r.check for r in answer.results] == ["no_emails"]
    assert (await runtime.replay(result.run_id)).identical


async def test_a_denied_tool_call_never_runs_and_the_model_reads_why(store: MemoryStore) -> None:
    refunds: list[float] = []

    @check(points=["tool_call"])
    def small_refunds(request: CheckRequest) -> CheckResult:
        assert request.arguments is not None
        is_refund = request.call is not None and request.call.name == "refund"
        if is_refund and request.arguments["amount_usd"] > 100:
            return CheckResult.deny("refunds over $100 are not allowed here")
        return CheckResult.allow()

    model = ScriptedModel([call("refund", amount_usd=500), "Sorry."])
    agent = Agent(name="desk", model=model, tools=[refund], deps=refunds, checks=[small_refunds])
    result = await Runtime(store=store, settings=NO_MODELS).run(agent, "Refund $500")

    assert refunds == []
    [told] = [m for m in result.messages if isinstance(m, ToolResultMessage)]
    assert told.is_error
    assert "refunds over $100 are not allowed here" in told.content
    assert "small_refunds" in told.content


async def test_an_escalated_tool_call_waits_for_a_person_through_the_approvals(
    store: MemoryStore,
) -> None:
    refunds: list[float] = []

    @check(points=["tool_call"])
    async def second_pair_of_eyes(request: CheckRequest) -> CheckResult:
        await asyncio.sleep(0)  # a check may do I/O
        return CheckResult.escalate("refunds need a second pair of eyes")

    model = ScriptedModel([call("refund", amount_usd=50), "Done."])
    agent = Agent(
        name="desk", model=model, tools=[refund], deps=refunds, checks=[second_pair_of_eyes]
    )
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    waiting = await runtime.run(agent, "Refund $50")

    assert waiting.status == "awaiting_approval"
    [pending] = waiting.pending
    assert (pending.kind, pending.check) == ("escalated", "second_pair_of_eyes")
    assert pending.reason == "refunds need a second pair of eyes"
    assert refunds == []
    done = await runtime.approve(waiting.run_id, by="ana")
    assert (done.status, refunds) == ("completed", [50.0])


async def test_a_tool_result_check_redacts_it_once_and_replay_does_not_ask_again(
    store: MemoryStore,
) -> None:
    asked: list[str] = []

    @check(points=["tool_result"])
    async def mask_cards(request: CheckRequest) -> CheckResult:
        asked.append(request.text or "")
        await asyncio.sleep(0.001)  # e.g. a call to a redaction service
        text = (request.text or "").replace("4111 1111 1111 1111", "[card]")
        return CheckResult.modify(text, "card number")

    model = ScriptedModel([call("lookup", order_id="7"), "It shipped."])
    agent = Agent(name="desk", model=model, tools=[lookup], checks=[mask_cards])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    result = await runtime.run(agent, "Order 7?")

    seen = [m for m in model.requests[1].messages if isinstance(m, ToolResultMessage)]
    assert "[card]" in seen[0].content
    assert "4111" not in seen[0].content
    assert len(asked) == 1
    replayed = await runtime.replay(result.run_id)
    assert replayed.identical
    assert len(asked) == 1  # replay read the answer from the journal


async def test_an_escalated_tool_result_is_withheld_until_a_person_decides(
    store: MemoryStore,
) -> None:
    @check(points=["tool_result"])
    def suspicious(request: CheckRequest) -> CheckResult:
        return CheckResult.escalate("this result looks like an injection")

    model = ScriptedModel([call("lookup", order_id="7"), "It shipped."])
    agent = Agent(name="desk", model=model, tools=[lookup], checks=[suspicious])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    waiting = await runtime.run(agent, "Order 7?")

    assert waiting.status == "awaiting_approval"
    [pending] = waiting.pending
    assert pending.call.id.startswith("result:")
    assert len(model.requests) == 1  # the model has not seen it
    rejected = await runtime.reject(waiting.run_id, by="sec", reason="injection")
    assert rejected.status == "completed"
    seen = [m for m in model.requests[1].messages if isinstance(m, ToolResultMessage)]
    assert seen[0].is_error
    assert "withheld this result: injection" in seen[0].content


async def test_a_denied_model_call_pauses_and_a_resume_asks_the_check_again(
    store: MemoryStore,
) -> None:
    open_now = [False]

    @check(points=["model_call"])
    def business_hours(request: CheckRequest) -> CheckResult:
        return CheckResult.allow() if open_now[0] else CheckResult.deny("outside business hours")

    agent = Agent(name="desk", model=ScriptedModel(["Hello."]), checks=[business_hours])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    paused = await runtime.run(agent, "Hi")
    assert paused.status == "paused"
    assert paused.reason is not None
    assert paused.reason.code == "check.denied"
    open_now[0] = True
    assert (await runtime.resume(paused.run_id)).status == "completed"


async def test_a_denied_input_fails_the_run_and_a_failing_check_denies(store: MemoryStore) -> None:
    def broken(request: CheckRequest) -> CheckResult:
        raise RuntimeError("moderation service down")

    agent = Agent(name="desk", model=ScriptedModel(["never"]), checks=[broken])
    result = await Runtime(store=store, settings=NO_MODELS).run(agent, "Hi")

    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.code == "check.denied"
    assert "moderation service down" in result.reason.message


async def test_runtime_checks_apply_to_every_agent_before_its_own(store: MemoryStore) -> None:
    order: list[str] = []

    def first(request: CheckRequest) -> CheckResult:
        order.append("runtime")
        return CheckResult.allow()

    def second(request: CheckRequest) -> CheckResult:
        order.append("agent")
        return CheckResult.allow()

    agent = Agent(
        name="desk", model=ScriptedModel(["ok"]), checks=[check(second, points=["input"])]
    )
    runtime = Runtime(store=store, settings=NO_MODELS, checks=[check(first, points=["input"])])
    result = await runtime.run(agent, "Hi", limits=Limits(max_steps=2))

    assert result.status == "completed"
    assert order == ["runtime", "agent"]

"""Runtime.run end to end with scripted models: the loop, tools, limits, output, threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from keel import Agent, Limits, Price, RunContext, Runtime, StoreError, ToolError, UsageError, tool
from keel._core.events import (
    ModelFailed,
    ModelResponded,
    OutputRejected,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from keel._core.messages import AssistantMessage, ModelRequest, ModelResponse, ToolResultMessage
from keel._core.usage import Usage
from keel.errors import ModelHTTPError, RunFailedError, RunNotCompletedError
from keel.ports import Model
from keel.testing import FakeClock, FunctionModel, MemoryStore, ScriptedModel, call

ORDERS = {"123": {"status": "shipped", "carrier": "UPS"}}


@tool(idempotent=True, side_effects="read")
def lookup_order(ctx: RunContext[dict[str, Any]], order_id: str) -> dict[str, str]:
    """Find an order by id."""
    if order_id not in ctx.deps:
        raise ToolError(f"no order {order_id}; ask the customer to check the number")
    return dict(ctx.deps[order_id])


def support(model: Model, **options: Any) -> Agent[Any]:
    return Agent(
        name="support",
        instructions="Help customers.",
        model=model,
        tools=options.pop("tools", [lookup_order]),
        deps=options.pop("deps", ORDERS),
        **options,
    )


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    async with Runtime(store=MemoryStore(), clock=FakeClock(tick=0.001)) as rt:
        yield rt


def event_types(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


async def test_a_tool_call_then_an_answer_completes_the_run(runtime: Runtime) -> None:
    model = ScriptedModel([call("lookup_order", order_id="123"), "It shipped with UPS."])

    result = await runtime.run(support(model), "Where is order 123?")

    assert result.status == "completed"
    assert result.output == "It shipped with UPS."
    assert (result.steps, result.tool_calls) == (2, 1)
    assert result.usage.requests == 2
    assert result.cost_usd == 0.0  # the scripted model is priced, at zero
    model.assert_complete()
    tool_result = model.requests[1].messages[-1]
    assert isinstance(tool_result, ToolResultMessage)
    assert tool_result.content == '{"status":"shipped","carrier":"UPS"}'
    events = await runtime.store.load(result.run_id)
    assert event_types(events) == [
        "RunStarted",
        "ModelResponded",
        "ToolCallStarted",
        "ToolCallFinished",
        "ModelResponded",
        "RunFinished",
    ]
    record = await runtime.get_run(result.run_id)
    assert (record.status, record.last_seq, record.output_preview) == (
        "completed",
        6,
        "It shipped with UPS.",
    )


async def test_the_model_sees_instructions_input_and_tool_definitions(runtime: Runtime) -> None:
    model = ScriptedModel(["Hello."])

    await runtime.run(support(model), "Hi")

    [request] = model.requests
    assert [m.role for m in request.messages] == ["system", "user"]
    assert [t.name for t in request.tools] == ["lookup_order"]
    assert request.tools[0].parameters["required"] == ["order_id"]


async def test_tools_get_deps_and_a_stable_idempotency_key(runtime: Runtime) -> None:
    seen: list[RunContext[str]] = []

    @tool
    def charge(ctx: RunContext[str], amount_usd: float) -> str:
        """Charge the customer."""
        seen.append(ctx)
        return "charged"

    model = ScriptedModel([call("charge", amount_usd=5), "Done."])
    result = await runtime.run(support(model, tools=[charge]), "Charge me", deps="payments-api")

    [ctx] = seen
    assert ctx.deps == "payments-api"
    assert (ctx.run_id, ctx.step, ctx.tool_name) == (result.run_id, 1, "charge")
    assert ctx.idempotency_key == f"{result.run_id}:1:0"
    events = await runtime.store.load(result.run_id)
    [started] = [e for e in events if isinstance(e, ToolCallStarted)]
    assert started.idempotency_key == ctx.idempotency_key


async def test_tool_call_is_journaled_before_the_tool_runs(runtime: Runtime) -> None:
    journal_seen_by_tool: list[str] = []

    @tool
    async def send_email(ctx: RunContext[Runtime], to: str) -> str:
        """Send an email."""
        events = await ctx.deps.store.load(ctx.run_id)
        journal_seen_by_tool.extend(event_types(events))
        return "sent"

    model = ScriptedModel([call("send_email", to="a@example.com"), "Sent."])
    await runtime.run(support(model, tools=[send_email]), "Email Ana", deps=runtime)

    assert journal_seen_by_tool == ["RunStarted", "ModelResponded", "ToolCallStarted"]


async def test_parallel_calls_run_concurrently(runtime: Runtime) -> None:
    both_started = asyncio.Barrier(2)

    @tool
    async def fetch(source: str) -> str:
        """Fetch from a source."""
        # Each call waits for the other to start: run one after the other, this deadlocks.
        async with asyncio.timeout(5):
            await both_started.wait()
        return source.upper()

    model = ScriptedModel([[call("fetch", source="crm"), call("fetch", source="erp")], "Both."])
    result = await runtime.run(support(model, tools=[fetch]), "Check both systems")

    assert result.status == "completed"
    results = [m for m in model.requests[1].messages if isinstance(m, ToolResultMessage)]
    assert [r.content for r in results] == ["CRM", "ERP"]  # in the model's order


async def test_invalid_arguments_go_back_to_the_model_and_the_tool_never_runs(
    runtime: Runtime,
) -> None:
    calls: list[str] = []

    @tool
    def refund(order_id: str, amount_usd: float) -> str:
        """Refund an order."""
        calls.append(order_id)
        return "refunded"

    model = ScriptedModel(
        [
            call("refund", order_id="123", amount_usd="a lot"),
            call("refund", '{"order_id": "123", "amount_usd": '),
            call("refund", order_id="123"),
            call("refund", order_id="123", amount_usd=5),
            "Refunded $5.",
        ]
    )
    result = await runtime.run(support(model, tools=[refund]), "Refund order 123")

    assert result.status == "completed"
    assert calls == ["123"]  # only the valid call ran
    errors = [m.content for m in result.messages if isinstance(m, ToolResultMessage) and m.is_error]
    assert len(errors) == 3
    assert "amount_usd: Input should be a valid number" in errors[0]
    assert "not valid JSON" in errors[1]
    assert "amount_usd: Field required" in errors[2]


async def test_unknown_tool_gets_an_error_the_model_can_recover_from(runtime: Runtime) -> None:
    model = ScriptedModel([call("cancel_order", order_id="1"), "I cannot cancel orders."])

    result = await runtime.run(support(model), "Cancel order 1")

    assert result.status == "completed"
    error = model.requests[1].messages[-1]
    assert isinstance(error, ToolResultMessage)
    assert error.is_error
    assert "no tool named 'cancel_order'; available tools: lookup_order" in error.content


async def test_tool_errors_and_exceptions_are_reported_to_the_model(runtime: Runtime) -> None:
    @tool
    def flaky(kind: str) -> str:
        """Fail in some way."""
        if kind == "tool_error":
            raise ToolError("the warehouse is closed; try tomorrow")
        raise KeyError(kind)

    model = ScriptedModel([[call("flaky", kind="tool_error"), call("flaky", kind="bug")], "Sorry."])
    result = await runtime.run(support(model, tools=[flaky]), "Go")

    assert result.status == "completed"
    finished = [
        e for e in await runtime.store.load(result.run_id) if isinstance(e, ToolCallFinished)
    ]
    assert [(e.error.code if e.error else None) for e in finished] == [
        "tool_error",
        "tool_exception",
    ]
    assert finished[0].result == "Error: the warehouse is closed; try tomorrow"
    assert finished[1].result == "Error: tool 'flaky' raised KeyError: 'bug'"


async def test_tools_safe_to_repeat_that_hang_past_their_timeout_are_stopped(
    runtime: Runtime,
) -> None:
    release = threading.Event()

    @tool(timeout_s=0.1, side_effects="read")
    async def slow_async() -> str:
        """Hang."""
        await asyncio.sleep(60)
        return "never"

    @tool(timeout_s=0.1, idempotent=True)
    def slow_sync() -> str:
        """Hang in a thread."""
        release.wait(60)
        return "never"

    model = ScriptedModel([[call("slow_async"), call("slow_sync")], "They timed out."])
    try:
        result = await runtime.run(support(model, tools=[slow_async, slow_sync]), "Go")
    finally:
        release.set()

    assert result.status == "completed"
    results = [m for m in result.messages if isinstance(m, ToolResultMessage)]
    assert [r.is_error for r in results] == [True, True]
    assert all("did not finish within 0.1s" in r.content for r in results)


async def test_a_model_that_loops_pauses_at_the_step_limit_and_resumes(runtime: Runtime) -> None:
    model = ScriptedModel([call("lookup_order", order_id="123")] * 4 + ["Finally done."])
    agent = support(model, limits=Limits(max_steps=3))

    paused = await runtime.run(agent, "Where is order 123?")

    assert paused.status == "paused"
    assert paused.reason is not None
    assert paused.reason.code == "limit.max_steps"
    assert "(3 of 3)" in paused.reason.message
    assert paused.output_or_none is None
    with pytest.raises(RunNotCompletedError, match="resume it once what stopped it is fixed"):
        _ = paused.output
    with pytest.raises(RunFailedError, match="ended paused"):
        paused.raise_for_status()

    resumed = await runtime.resume(paused.run_id, agent, limits=Limits(max_steps=10))

    assert resumed.status == "completed"
    assert resumed.output == "Finally done."
    assert resumed.steps == 5
    model.assert_complete()
    events = await runtime.store.load(paused.run_id)
    assert sum(isinstance(e, RunPaused) for e in events) == 1
    assert sum(isinstance(e, RunResumed) for e in events) == 1
    assert sum(isinstance(e, RunStarted) for e in events) == 1


async def test_resuming_a_finished_run_returns_it_unchanged(runtime: Runtime) -> None:
    model = ScriptedModel(["Done."])
    agent = support(model)
    done = await runtime.run(agent, "Hi")

    again = await runtime.resume(done.run_id, agent)

    assert (again.status, again.output) == ("completed", "Done.")
    assert len(await runtime.store.load(done.run_id)) == 3


async def test_resume_refuses_another_agent(runtime: Runtime) -> None:
    done = await runtime.run(support(ScriptedModel(["Done."])), "Hi")
    other = Agent(name="billing", model=ScriptedModel([]))
    with pytest.raises(UsageError, match="belongs to agent 'support'"):
        await runtime.resume(done.run_id, other)


async def test_token_limit_pauses_the_run(runtime: Runtime) -> None:
    turn = ModelResponse(
        message=AssistantMessage(tool_calls=(call("lookup_order", order_id="123"),)),
        usage=Usage(requests=1, input_tokens=600, output_tokens=10),
    )
    model = ScriptedModel([turn, turn])
    result = await runtime.run(support(model, limits=Limits(max_total_tokens=1000)), "Go")

    assert result.status == "paused"
    assert result.reason is not None
    assert result.reason.code == "limit.max_total_tokens"
    assert result.usage.total_tokens == 1220


async def test_wall_time_limit_pauses_a_run_stuck_in_a_model_call() -> None:
    class Stuck(Model):
        @property
        def name(self) -> str:
            return "stuck"

        async def request(self, request: ModelRequest) -> ModelResponse:
            await asyncio.sleep(60)
            raise AssertionError("unreachable")

    async with Runtime(store=MemoryStore()) as runtime:
        agent = support(Stuck(), limits=Limits(max_wall_time_s=0.2))
        result = await runtime.run(agent, "Hi")

    assert result.status == "paused"
    assert result.reason is not None
    assert result.reason.code == "limit.max_wall_time_s"


class OrderStatus(BaseModel):
    order_id: str
    status: str


async def test_structured_output_is_validated_and_typed(runtime: Runtime) -> None:
    model = ScriptedModel(['```json\n{"order_id": "123", "status": "shipped"}\n```'])
    agent = Agent(name="support", model=model, output_type=OrderStatus)

    result = await runtime.run(agent, "Status of 123?")

    assert result.output == OrderStatus(order_id="123", status="shipped")
    assert model.requests[0].output_schema is not None
    assert model.requests[0].output_name == "OrderStatus"


async def test_invalid_structured_output_is_retried_then_pauses_clearly(runtime: Runtime) -> None:
    model = ScriptedModel(["shipped", '{"order_id": "123"}', '{"status": "shipped"}'])
    agent = Agent(
        name="support", model=model, output_type=OrderStatus, limits=Limits(max_output_retries=2)
    )

    result = await runtime.run(agent, "Status of 123?")

    assert result.status == "paused"
    assert result.reason is not None
    assert result.reason.code == "output_invalid"
    assert "after 3 attempts" in result.reason.message
    assert "order_id: Field required" in result.reason.message
    assert result.output_or_none is None
    events = await runtime.store.load(result.run_id)
    assert sum(isinstance(e, OutputRejected) for e in events) == 2


async def test_invalid_then_valid_structured_output_completes(runtime: Runtime) -> None:
    model = ScriptedModel(["shipped", '{"order_id": "123", "status": "shipped"}'])
    agent = Agent(name="support", model=model, output_type=OrderStatus)

    result = await runtime.run(agent, "Status of 123?")

    assert result.output == OrderStatus(order_id="123", status="shipped")
    correction = model.requests[1].messages[-1]
    assert correction.role == "user"
    assert "not valid JSON" in str(correction)


async def test_a_provider_error_fails_the_run_with_its_code(runtime: Runtime) -> None:
    error = ModelHTTPError("openai returned HTTP 401 ...", status=401, model="gpt")
    result = await runtime.run(support(ScriptedModel([error])), "Hi")

    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.code == "model_authentication"
    [failed] = [e for e in await runtime.store.load(result.run_id) if isinstance(e, ModelFailed)]
    assert (failed.status, failed.retryable) == (401, False)


async def test_a_broken_custom_model_fails_the_run_instead_of_raising(runtime: Runtime) -> None:
    result = await runtime.run(support(ScriptedModel([])), "Hi")

    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.code == "model_error"
    assert "ScriptedModel got request #1" in result.reason.message


async def test_unknown_prices_make_the_cost_unknown_not_zero(runtime: Runtime) -> None:
    result = await runtime.run(support(ScriptedModel(["Hi."], name="acme:mystery")), "Hi")

    assert result.cost_usd is None
    record = await runtime.store.get_run(result.run_id)
    assert record.cost_usd is None


async def test_price_overrides_set_the_cost() -> None:
    answer = ModelResponse(
        message=AssistantMessage(content="Hi."),
        usage=Usage(requests=1, input_tokens=1_000_000, output_tokens=500_000),
    )
    prices = {"acme:*": Price(input_per_mtok=1.0, output_per_mtok=4.0)}
    async with Runtime(store=MemoryStore(), prices=prices) as runtime:
        result = await runtime.run(support(ScriptedModel([answer], name="acme:big")), "Hi")
    assert result.cost_usd == pytest.approx(3.0)


async def test_a_thread_carries_the_conversation_into_the_next_run(runtime: Runtime) -> None:
    first = ScriptedModel([call("lookup_order", order_id="123"), "It shipped."])
    await runtime.run(support(first), "Where is order 123?", thread="customer-42")
    second = ScriptedModel(["With UPS."])

    result = await runtime.run(support(second), "Which carrier?", thread="customer-42")

    assert result.thread_id == "customer-42"
    roles = [m.role for m in second.requests[0].messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert [m.role for m in result.messages] == ["user", "assistant"]


async def test_failed_runs_do_not_enter_the_thread_history(runtime: Runtime) -> None:
    await runtime.run(support(ScriptedModel([])), "This one fails", thread="t")
    model = ScriptedModel(["Hello."])
    await runtime.run(support(model), "Hi", thread="t")
    assert [m.role for m in model.requests[0].messages] == ["system", "user"]


async def test_threads_survive_a_new_runtime_on_the_same_file(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    async with Runtime(store=db) as runtime:
        await runtime.run(
            support(ScriptedModel(["Noted: you like tea."])), "I like tea", thread="t"
        )
    async with Runtime(store=db) as runtime:
        model = ScriptedModel(["You like tea."])
        await runtime.run(support(model), "What do I like?", thread="t")
    assert [str(getattr(m, "content", "")) for m in model.requests[0].messages[1:]] == [
        "I like tea",
        "Noted: you like tea.",
        "What do I like?",
    ]


async def test_bad_input_is_a_usage_error_naming_the_fix(runtime: Runtime) -> None:
    agent = support(ScriptedModel([]))
    with pytest.raises(UsageError, match="input is empty"):
        await runtime.run(agent, "   ")
    with pytest.raises(UsageError, match="must be a str"):
        await runtime.run(agent, 42)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="thread must be a non-empty str"):
        await runtime.run(agent, "Hi", thread="")
    with pytest.raises(UsageError, match="control characters"):
        await runtime.run(agent, "Hi", thread="a\nb")
    with pytest.raises(UsageError, match=r"needs a keel\.Agent"):
        await runtime.run("support", "Hi")  # type: ignore[arg-type]


def test_run_sync_refuses_what_is_not_an_agent() -> None:
    with pytest.raises(UsageError, match=r"needs a keel\.Agent, got str"):
        Runtime(store=MemoryStore()).run_sync("support", "Hi")  # type: ignore[arg-type]


def test_run_sync_runs_without_an_event_loop() -> None:
    runtime = Runtime(store=MemoryStore())
    first = runtime.run_sync(support(ScriptedModel(["One."])), "Hi")
    second = runtime.run_sync(support(ScriptedModel(["Two."])), "Hi again")
    assert (first.output, second.output) == ("One.", "Two.")


async def test_run_sync_inside_an_event_loop_says_to_await(runtime: Runtime) -> None:
    with pytest.raises(UsageError, match=r"await runtime\.run"):
        runtime.run_sync(support(ScriptedModel([])), "Hi")


async def test_many_runtimes_in_one_process_do_not_share_state() -> None:
    stores = [MemoryStore() for _ in range(3)]
    for i, store in enumerate(stores):
        async with Runtime(store=store) as runtime:
            await runtime.run(support(ScriptedModel([f"answer {i}"])), "Hi")
    assert [len(await s.list_runs()) for s in stores] == [1, 1, 1]


async def test_each_event_is_stamped_by_the_injected_clock() -> None:
    clock = FakeClock(start=5_000.0, tick=1.0)
    async with Runtime(store=MemoryStore(), clock=clock) as runtime:
        result = await runtime.run(support(ScriptedModel(["Hi."])), "Hi")
        events = await runtime.store.load(result.run_id)
    stamps = [e.at for e in events]
    assert stamps == sorted(stamps)
    assert stamps[0] >= 5_000.0
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished)
    assert isinstance(events[1], ModelResponded)
    assert stamps[-1] < time.time() - 1e9  # far in the past: the real clock stamped nothing


async def test_a_borrowed_store_stays_open_and_an_owned_one_is_closed(tmp_path: Path) -> None:
    store = MemoryStore()
    async with Runtime(store=store) as runtime:
        await runtime.run(support(ScriptedModel(["Hi."])), "Hi")
    assert len(await store.list_runs()) == 1  # still usable

    owned = Runtime(store=tmp_path / "keel.db")
    await owned.close()
    with pytest.raises(StoreError, match="closed"):
        await owned.store.list_runs()


async def _journal_seen_by_each_model_call(tool_options: dict[str, Any]) -> list[list[str]]:
    """Run two tool steps; return the journal as the model saw it at each of its calls."""
    store = MemoryStore()
    seen: list[list[str]] = []

    @tool(**tool_options)
    def act(n: int) -> str:
        """Do something."""
        return f"did {n}"

    async def model(request: ModelRequest) -> Any:
        runs = await store.list_runs()
        seen.append(event_types(await store.load(runs[0].run_id)) if runs else [])
        turn = len(seen)
        return call("act", n=turn) if turn < 3 else "Done."

    async with Runtime(store=store) as runtime:
        result = await runtime.run(support(FunctionModel(model), tools=[act]), "Go")
    assert result.status == "completed"
    return seen


async def test_a_write_tools_result_is_durable_before_the_next_model_call() -> None:
    seen = await _journal_seen_by_each_model_call({})

    assert seen[1][-2:] == ["ToolCallStarted", "ToolCallFinished"]
    assert seen[2][-2:] == ["ToolCallStarted", "ToolCallFinished"]


async def test_a_repeatable_tools_result_rides_along_with_the_next_answer() -> None:
    seen = await _journal_seen_by_each_model_call({"idempotent": True})

    # Step 1's result is not yet stored when the model is asked for step 2 ...
    assert seen[1][-2:] == ["ModelResponded", "ToolCallStarted"]
    # ... and is stored, with step 2's answer, before step 2's tool runs.
    assert seen[2] == [
        "RunStarted",
        "ModelResponded",
        "ToolCallStarted",
        "ToolCallFinished",
        "ModelResponded",
        "ToolCallStarted",
    ]

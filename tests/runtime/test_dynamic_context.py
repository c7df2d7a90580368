"""Instructions functions, tool filters and tool sources: asked once when a run starts, their
answer journaled, and never asked again by a resume, a replay or another process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from keel import Agent, AgentContext, KeelSettings, RunContext, Runtime, Tool, ToolSource, tool
from keel.events import RunStarted
from keel.stores import SQLiteStore
from keel.testing import FakeClock, MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


@tool(side_effects="read")
def lookup(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: shipped"


@tool
def refund(order_id: str) -> str:
    """Refund an order."""
    return f"refunded {order_id}"


def tool_names(model: ScriptedModel, index: int = 0) -> list[str]:
    return [t.name for t in model.requests[index].tools]


async def test_an_instructions_function_sees_who_the_run_is_for_and_is_journaled(
    store: MemoryStore,
) -> None:
    seen: list[AgentContext[Any]] = []

    async def instructions(ctx: AgentContext[dict[str, str]]) -> str:
        seen.append(ctx)
        return f"Help {ctx.user} of {ctx.tenant} ({ctx.deps['plan']}) on {ctx.today}."

    model = ScriptedModel(["Hello."])
    agent = Agent(name="desk", instructions=instructions, model=model, deps={"plan": "gold"})
    clock = FakeClock(start=86_400.0 * 365)
    runtime = Runtime(store=store, clock=clock, settings=NO_MODELS)

    result = await runtime.run(agent, "Hi", thread="t-1", tenant="acme", user="ana")

    [ctx] = seen
    assert (ctx.run_id, ctx.thread_id, ctx.agent, ctx.input) == (result.run_id, "t-1", "desk", "Hi")
    assert ctx.now == 86_400.0 * 365
    text = "Help ana of acme (gold) on 1971-01-01."
    assert model.requests[0].messages[0].content == text
    started = (await store.load(result.run_id))[0]
    assert isinstance(started, RunStarted)
    assert started.instructions == text


async def test_the_deps_of_the_run_reach_the_instructions_function(store: MemoryStore) -> None:
    model = ScriptedModel(["ok"])
    agent = Agent(
        name="desk", instructions=lambda ctx: f"Plan: {ctx.deps}", model=model, deps="default"
    )
    runtime = Runtime(store=store, settings=NO_MODELS)

    await runtime.run(agent, "Hi", deps="given")

    assert model.requests[0].messages[0].content == "Plan: given"


async def test_a_failing_instructions_function_fails_the_run_naming_it(store: MemoryStore) -> None:
    def instructions(ctx: AgentContext[None]) -> str:
        raise LookupError("no profile for ana")

    model = ScriptedModel([])
    agent = Agent(name="desk", instructions=instructions, model=model)
    runtime = Runtime(store=store, settings=NO_MODELS)

    result = await runtime.run(agent, "Hi", thread="t-1", user="ana")

    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.code == "instructions_failed"
    assert "agent 'desk'" in result.reason.message
    assert "LookupError: no profile for ana" in result.reason.message
    assert model.requests == []
    # The thread is not held by the failed run: the next message runs.
    agent2 = Agent(name="desk2", model=ScriptedModel(["ok"]))
    assert (await runtime.run(agent2, "Hi", thread="t-1")).status == "completed"


async def test_instructions_that_are_not_text_fail_the_run(store: MemoryStore) -> None:
    agent = Agent(name="desk", instructions=lambda ctx: 42, model=ScriptedModel([]))  # type: ignore[arg-type,return-value]
    runtime = Runtime(store=store, settings=NO_MODELS)

    result = await runtime.run(agent, "Hi")

    assert result.reason is not None
    assert "returned a int; it must return the instructions as a str" in result.reason.message


async def test_a_submitted_run_whose_instructions_fail_is_journaled_failed(
    store: MemoryStore,
) -> None:
    def instructions(ctx: AgentContext[None]) -> str:
        raise RuntimeError("boom")

    agent = Agent(name="desk", instructions=instructions, model=ScriptedModel([]))
    runtime = Runtime(store=store, settings=NO_MODELS)

    run_id = await runtime.submit(agent, "Hi")

    result = await runtime.result(run_id)
    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.code == "instructions_failed"


async def test_the_instructions_function_is_asked_once_across_a_crash_and_a_resume(
    tmp_path: Path,
) -> None:
    """The run 'crashes' while its tool hangs; another runtime on the same SQLite file resumes
    it: it reads the journaled instructions and never asks the function again."""
    asked: list[str] = []
    entered = asyncio.Event()
    gate = asyncio.Event()

    def instructions(ctx: AgentContext[None]) -> str:
        asked.append(ctx.run_id)
        return f"Version {len(asked)}."

    @tool(idempotent=True)
    async def wait_here(ctx: RunContext[None]) -> str:
        """Wait."""
        entered.set()
        await gate.wait()
        return "waited"

    first_model = ScriptedModel([call("wait_here")])
    agent = Agent(name="desk", instructions=instructions, model=first_model, tools=[wait_here])
    db = tmp_path / "keel.db"
    async with SQLiteStore(db) as store:
        runtime = Runtime(store=store, settings=NO_MODELS)
        task = asyncio.create_task(runtime.run(agent, "Go"))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [record] = await store.list_runs()

    gate.set()
    second_model = ScriptedModel(["Done."])
    again = Agent(name="desk", instructions=instructions, model=second_model, tools=[wait_here])
    async with SQLiteStore(db) as store:
        runtime = Runtime(store=store, settings=NO_MODELS, agents=[again])
        result = await runtime.resume(record.run_id)
        replayed = await runtime.replay(record.run_id)

    assert (result.status, result.output) == ("completed", "Done.")
    assert asked == [record.run_id]  # once, at the start
    assert second_model.requests[0].messages[0].content == "Version 1."
    # Replay shows the journaled text and asks nothing either.
    assert replayed.state.messages[0].content == "Version 1."
    assert asked == [record.run_id]


async def test_a_tool_filter_decides_once_which_tools_a_run_has(store: MemoryStore) -> None:
    asked: list[str] = []

    def admins_refund(ctx: AgentContext[None], item: Tool) -> bool:
        asked.append(item.name)
        return item.name != "refund" or "admin" in ctx.roles

    model = ScriptedModel(["ok", call("refund", order_id="1"), "I cannot refund."])
    agent = Agent(name="desk", model=model, tools=[lookup, refund], tool_filter=admins_refund)
    runtime = Runtime(store=store, settings=NO_MODELS)

    admin = await runtime.run(agent, "Hi", roles=["admin"])
    clerk = await runtime.run(agent, "Refund 1", roles=["clerk"])

    assert tool_names(model, 0) == ["lookup", "refund"]
    assert tool_names(model, 1) == ["lookup"]  # the model sees only the enabled tools
    assert asked == ["lookup", "refund", "lookup", "refund"]  # once per tool per run
    for result, tools in ((admin, ("lookup", "refund")), (clerk, ("lookup",))):
        started = (await store.load(result.run_id))[0]
        assert isinstance(started, RunStarted)
        assert started.tools == tools
    # A call of a disabled tool is refused like an unknown tool's.
    refused = next(m for m in clerk.messages if m.role == "tool")
    assert refused.content == "Error: there is no tool named 'refund'; available tools: lookup"
    assert clerk.output == "I cannot refund."


async def test_a_tool_filter_that_raises_fails_the_run(store: MemoryStore) -> None:
    def broken(ctx: AgentContext[None], item: Tool) -> bool:
        raise KeyError("roles")

    agent = Agent(name="desk", model=ScriptedModel([]), tools=[lookup], tool_filter=broken)
    runtime = Runtime(store=store, settings=NO_MODELS)

    result = await runtime.run(agent, "Hi")

    assert result.reason is not None
    assert result.reason.code == "tool_filter_failed"
    assert "tool 'lookup'" in result.reason.message


class Catalog:
    """A tool source whose tools change from run to run (like an MCP server's)."""

    def __init__(self) -> None:
        self.tools: list[Tool] = []
        self.asked = 0

    def current_tools(self) -> Sequence[Tool]:
        self.asked += 1
        return list(self.tools)


def priced(name: str, price: str) -> Tool:
    def price_of(item: str) -> str:
        """The price of an item."""
        return f"{item}: {price}"

    return tool(name=name)(price_of)


async def test_a_tool_source_is_asked_at_each_run_start(store: MemoryStore) -> None:
    catalog = Catalog()
    assert isinstance(catalog, ToolSource)
    catalog.tools = [priced("price_v1", "10 EUR")]
    model = ScriptedModel([call("price_v1", item="tea"), "Tea is 10 EUR.", "ok"])
    agent = Agent(name="shop", model=model, tools=[lookup, catalog])
    runtime = Runtime(store=store, settings=NO_MODELS)

    first = await runtime.run(agent, "Price of tea?")
    catalog.tools = [priced("price_v2", "12 EUR")]
    second = await runtime.run(agent, "Hi")

    assert first.messages[-2].content == "tea: 10 EUR"
    assert tool_names(model, 0) == ["lookup", "price_v1"]
    assert tool_names(model, 2) == ["lookup", "price_v2"]
    started = (await store.load(second.run_id))[0]
    assert isinstance(started, RunStarted)
    assert started.tools == ("lookup", "price_v2")


async def test_a_resumed_run_finds_its_source_tools_by_their_journaled_names(
    store: MemoryStore,
) -> None:
    entered = asyncio.Event()
    gate = asyncio.Event()
    catalog = Catalog()

    @tool(name="slow_price", idempotent=True)
    async def slow_price(item: str) -> str:
        """The price, slowly."""
        entered.set()
        await gate.wait()
        return f"{item}: 3 EUR"

    catalog.tools = [slow_price]
    agent = Agent(
        name="shop", model=ScriptedModel([call("slow_price", item="tea")]), tools=[catalog]
    )
    runtime = Runtime(store=store, settings=NO_MODELS)
    task = asyncio.create_task(runtime.run(agent, "Price?"))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = await store.list_runs()

    gate.set()
    catalog.tools = [slow_price, priced("other", "1 EUR")]  # the source changed meanwhile
    model = ScriptedModel(["Tea is 3 EUR."])
    again = Agent(name="shop", model=model, tools=[catalog])
    result = await Runtime(store=store, settings=NO_MODELS).resume(record.run_id, again)

    assert result.output == "Tea is 3 EUR."
    assert [m.content for m in result.messages if m.role == "tool"] == ["tea: 3 EUR"]
    assert tool_names(model) == ["slow_price"]  # the run's tools, as journaled

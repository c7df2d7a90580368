"""Big and long inputs are bounded: a tool result has a size cap, and a thread's history sent
to the model has a budget, with a summary of what it leaves out when the agent asks for one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from keel import Agent, History, KeelSettings, Limits, Runtime, tool
from keel.events import RunStarted, ToolCallFinished
from keel.messages import Message, ModelRequest, SystemMessage, ToolResultMessage
from keel.testing import FunctionModel, MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


@tool(side_effects="read")
def dump() -> str:
    """Return a lot."""
    return "x" * 50_000


async def test_a_long_tool_result_is_cut_and_the_model_is_told(store: MemoryStore) -> None:
    model = ScriptedModel([call("dump"), "ok"])
    agent = Agent(name="d", model=model, tools=[dump], limits=Limits(max_tool_result_chars=1000))
    result = await Runtime(store=store, settings=NO_MODELS).run(agent, "Go")

    [seen] = [m for m in model.requests[1].messages if isinstance(m, ToolResultMessage)]
    assert seen.content.startswith("x" * 1000)
    assert "[result cut: it had 50,000 characters; only the first 1,000 are shown]" in seen.content
    [finished] = [e for e in await store.load(result.run_id) if isinstance(e, ToolCallFinished)]
    assert finished.result == seen.content  # journaled once, as the model saw it
    assert finished.result_chars == 50_000
    assert (await Runtime(store=store, settings=NO_MODELS).replay(result.run_id, agent)).identical


async def test_a_tool_may_set_its_own_cap(store: MemoryStore) -> None:
    @tool(side_effects="read", max_result_chars=10)
    def short() -> str:
        """Return a little too much."""
        return "y" * 11

    model = ScriptedModel([call("short"), "ok"])
    await Runtime(store=store, settings=NO_MODELS).run(
        Agent(name="d", model=model, tools=[short]), "Go"
    )
    [seen] = [m for m in model.requests[1].messages if isinstance(m, ToolResultMessage)]
    assert seen.content.startswith("y" * 10 + "\n[result cut")


async def test_turn_200_of_a_thread_does_not_send_800_messages(store: MemoryStore) -> None:
    sizes: list[int] = []

    def answer(request: ModelRequest) -> str:
        sizes.append(len(request.messages))
        return "noted"

    agent = Agent(name="chat", model=FunctionModel(answer), history=History(max_messages=20))
    runtime = Runtime(store=store, settings=NO_MODELS)
    for i in range(200):
        await runtime.run(agent, f"message {i}", thread="long")

    assert max(sizes) <= 21  # the budget plus the new message
    assert sizes[-1] <= 21


async def test_what_the_budget_leaves_out_is_summed_up_once_and_journaled(
    store: MemoryStore,
) -> None:
    summaries: list[int] = []

    async def summarize(left_out: Sequence[Message]) -> str:
        summaries.append(len(left_out))
        return f"{len(left_out)} earlier messages about orders"

    seen: list[list[Message]] = []

    def answer(request: ModelRequest) -> str:
        seen.append(list(request.messages))
        return "ok"

    agent = Agent(
        name="chat",
        model=FunctionModel(answer),
        history=History(max_messages=4, summarize=summarize),
    )
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])
    for i in range(5):
        last = await runtime.run(agent, f"message {i}", thread="t")

    first = (await store.load(last.run_id))[0]
    assert isinstance(first, RunStarted)
    assert first.history_summary == "4 earlier messages about orders"
    assert any(
        isinstance(m, SystemMessage) and "4 earlier messages about orders" in m.content
        for m in seen[-1]
    )
    calls = len(summaries)
    assert (await runtime.replay(last.run_id)).identical
    assert len(summaries) == calls  # replay reads the summary from the journal

"""Delegation: an agent used as another agent's tool runs as a child run with its own journal,
linked to its parent both ways; its cost and tokens are added to the parent's exactly; an
approval in the child pauses the parent until a person decides and the parent is resumed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from keel import Agent, KeelSettings, Limits, Price, RunContext, Runtime, Usage, tool
from keel._core.delegation import child_run_id
from keel.errors import UsageError
from keel.events import RunStarted, ToolCallFinished, ToolCallWaiting
from keel.messages import AssistantMessage, ModelResponse, ToolResultMessage
from keel.observability import Tracing
from keel.stores import PostgresStore, SQLiteStore
from keel.testing import MemoryStore, ScriptedModel, call
from tests.observability.tracing_scenario import memory_provider

# 1,000 tokens in cost $1 and 1,000 out $2: sums of such costs are exact in binary.
PRICES = {"acme:*": Price(input_per_mtok=1000.0, output_per_mtok=2000.0)}


def turn(text: str | None = None, *calls: Any, tokens_in: int = 0, tokens_out: int = 0) -> Any:
    """A scripted turn that used tokens (so that it costs something)."""
    message = AssistantMessage(content=text, tool_calls=tuple(calls))
    usage = Usage(requests=1, input_tokens=tokens_in, output_tokens=tokens_out)
    return ModelResponse(message=message, usage=usage)


def researcher(*script: Any, tools: list[Any] | None = None) -> Agent[str]:
    return Agent(
        name="researcher",
        instructions="Find facts.\nBe brief.",
        model=ScriptedModel(list(script), name="acme:small"),
        tools=tools or [],
    )


def boss(child: Agent[Any], *script: Any) -> Agent[str]:
    return Agent(
        name="boss",
        model=ScriptedModel(list(script), name="acme:big"),
        tools=[child.as_tool()],
    )


async def test_a_delegated_call_runs_the_agent_as_a_child_run_and_answers_with_its_output() -> None:
    child = researcher("Paris is the capital.")
    parent = boss(child, call("researcher", input="capital of France?"), "It is Paris.")
    runtime = Runtime(store=MemoryStore())

    result = await runtime.run(parent, "Where is the government of France?")

    assert (result.status, result.output) == ("completed", "It is Paris.")
    asked = child.model.requests[0].messages[-1]  # type: ignore[union-attr]
    assert asked.content == "capital of France?"
    seen = parent.model.requests[1].messages[-1]  # type: ignore[union-attr]
    assert isinstance(seen, ToolResultMessage)
    assert (seen.content, seen.is_error) == ("Paris is the capital.", False)


async def test_parent_and_child_are_linked_both_ways() -> None:
    child = researcher("Paris.")
    parent = boss(child, call("researcher", input="capital?"), "Paris.")
    runtime = Runtime(store=MemoryStore())

    result = await runtime.run(parent, "Capital?")

    [record] = await runtime.children(result.run_id)
    events = await runtime.store.load(result.run_id)
    [finished] = [e for e in events if isinstance(e, ToolCallFinished)]
    assert record.run_id == child_run_id(result.run_id, finished.call.id)
    assert [c.run_id for c in finished.children] == [record.run_id]
    assert (record.agent, record.status, record.thread_id) == (
        "researcher",
        "completed",
        record.run_id,
    )
    started = (await runtime.store.load(record.run_id))[0]
    assert isinstance(started, RunStarted)
    assert (started.parent_run_id, started.parent_step, started.parent_call_id) == (
        result.run_id,
        1,
        finished.call.id,
    )
    link = await runtime.parent(record.run_id)
    assert link is not None
    assert (link.run_id, link.step, link.call_id) == (result.run_id, 1, finished.call.id)
    assert await runtime.parent(result.run_id) is None
    assert await runtime.children(record.run_id) == []


async def test_the_child_cost_and_tokens_roll_up_into_the_parent_exactly() -> None:
    child = researcher(
        turn(None, call("note", text="a"), tokens_in=1000),  # $1
        turn("Paris.", tokens_in=2000, tokens_out=500),  # $2 + $1
        tools=[_note_tool([])],
    )
    parent = boss(
        child,
        turn(None, call("researcher", input="capital?"), tokens_in=4000),  # $4
        turn("Paris.", tokens_out=4000),  # $8
    )
    runtime = Runtime(store=MemoryStore(), prices=PRICES)

    result = await runtime.run(parent, "Capital?")

    [record] = await runtime.children(result.run_id)
    assert record.cost_usd == 4.0
    assert (record.input_tokens, record.output_tokens) == (3000, 500)
    assert result.cost_usd == 4.0 + 8.0 + 4.0
    assert result.usage == Usage(requests=4, input_tokens=7000, output_tokens=4500)
    stored = await runtime.store.get_run(result.run_id)
    assert (stored.cost_usd, stored.input_tokens, stored.output_tokens) == (16.0, 7000, 4500)


async def test_an_unknown_child_cost_makes_the_parent_cost_unknown() -> None:
    child = Agent(name="researcher", model=ScriptedModel(["Paris."], name="nobody:priced"))
    parent = boss(child, call("researcher", input="capital?"), "Paris.")

    result = await Runtime(store=MemoryStore()).run(parent, "Capital?")

    assert result.status == "completed"
    assert result.cost_usd is None


def _note_tool(notes: list[str], **options: Any) -> Any:
    @tool(name="note", **options)
    def note(ctx: RunContext[None], text: str) -> str:
        """Write a note down (an effect outside the run)."""
        notes.append(text)
        return "noted"

    return note


async def test_an_approval_in_the_child_pauses_the_parent_until_decided_and_resumed() -> None:
    notes: list[str] = []
    child = researcher(
        turn(None, call("note", text="wire $5"), tokens_in=1000),
        turn("Wired.", tokens_in=1000),
        tools=[_note_tool(notes, requires_approval=True)],
    )
    parent = boss(
        child, turn(None, call("researcher", input="wire $5")), turn("Done.", tokens_in=1000)
    )
    runtime = Runtime(store=MemoryStore(), prices=PRICES, agents=[parent])

    paused = await runtime.run(parent, "Please wire $5")

    assert paused.status == "paused"
    assert paused.reason is not None
    [waiting] = await runtime.waiting_runs()
    assert waiting.agent == "researcher"
    assert paused.reason.code == "child_waiting"
    assert f"child run {waiting.run_id}" in paused.reason.message
    assert "keel approve" in paused.reason.message
    events = await runtime.store.load(paused.run_id)
    [wait] = [e for e in events if isinstance(e, ToolCallWaiting)]
    assert (wait.child.run_id, wait.child.status) == (waiting.run_id, "awaiting_approval")
    assert [r.run_id for r in await runtime.children(paused.run_id)] == [waiting.run_id]
    assert notes == []

    decided = await runtime.approve(waiting.run_id, by="ana")
    assert decided.status == "completed"
    done = await runtime.resume(paused.run_id)

    assert (done.status, done.output, notes) == ("completed", "Done.", ["wire $5"])
    # The child's cost ($2) is counted once, with the call's result, not at the pause.
    assert done.cost_usd == 3.0
    replay = await runtime.replay(paused.run_id)
    assert replay.identical, replay.differences


async def test_resuming_the_parent_before_the_decision_pauses_it_again() -> None:
    child = researcher(call("note", text="x"), "ok", tools=[_note_tool([], requires_approval=True)])
    parent = boss(child, call("researcher", input="x"), "Done.")
    runtime = Runtime(store=MemoryStore(), agents=[parent])
    paused = await runtime.run(parent, "x")

    again = await runtime.resume(paused.run_id)

    assert (again.status, again.reason and again.reason.code) == ("paused", "child_waiting")
    assert len(await runtime.children(paused.run_id)) == 1


async def test_a_failed_child_is_an_error_result_the_parent_reads_and_its_cost_counts() -> None:
    child = researcher(turn(None, call("nope"), tokens_in=1000))  # then its script runs out
    parent = boss(child, call("researcher", input="x"), "It failed.")
    runtime = Runtime(store=MemoryStore(), prices=PRICES)

    result = await runtime.run(parent, "x")

    assert (result.status, result.output) == ("completed", "It failed.")
    seen = parent.model.requests[1].messages[-1]  # type: ignore[union-attr]
    assert isinstance(seen, ToolResultMessage)
    assert seen.is_error
    assert "failed" in seen.content
    [record] = await runtime.children(result.run_id)
    assert record.status == "failed"
    assert result.cost_usd == 1.0


async def test_a_structured_output_reaches_the_parent_as_json() -> None:
    child = Agent(
        name="counter", model=ScriptedModel(['{"count": 3}'], name="acme:x"), output_type=dict
    )
    parent = boss(child, call("counter", input="count"), "Three.")

    await Runtime(store=MemoryStore()).run(parent, "How many?")

    seen = parent.model.requests[1].messages[-1]  # type: ignore[union-attr]
    assert seen.content == '{"count":3}'


def test_as_tool_names_and_describes_the_tool() -> None:
    agent = Agent(name="web.search", instructions="Search the web.\nCite sources.", model="rules")

    default = agent.as_tool()
    named = agent.as_tool("lookup", "Look things up.", timeout_s=5)

    assert default.name == "web_search"
    assert "web.search" in default.spec.description
    assert "Search the web." in default.spec.description
    assert "Cite" not in default.spec.description
    assert list(default.spec.parameters["properties"]) == ["input"]
    assert default.spec.idempotent
    limits = agent.limits
    assert default.spec.timeout_s == limits.max_wall_time_s + limits.tool_timeout_s + 60
    assert (named.name, named.spec.description, named.spec.timeout_s) == (
        "lookup",
        "Look things up.",
        5,
    )


async def test_the_tool_outside_a_run_is_refused_with_how_to_use_it() -> None:
    delegate = researcher("x").as_tool()
    context: RunContext[None] = RunContext(
        deps=None,
        run_id="run_1",
        thread_id="t",
        agent="a",
        step=1,
        tool_name="researcher",
        tool_call_id="c1",
        idempotency_key="k",
        usage=Usage(),
    )
    with pytest.raises(UsageError, match=r"must be called by a run a keel\.Runtime drives"):
        await delegate(context, "x")


def test_a_runtime_that_knows_an_agent_knows_the_agents_it_delegates_to() -> None:
    child = researcher("x")
    grandparent = Agent(name="top", model="rules", tools=[boss(child, "y").as_tool()])

    runtime = Runtime(store=MemoryStore(), agents=[grandparent])

    assert sorted(runtime.agents) == ["boss", "researcher", "top"]
    other = Agent(name="researcher", model="rules")
    with pytest.raises(UsageError, match="already registered"):
        Runtime(store=MemoryStore(), agents=[other, grandparent])


async def test_a_child_queued_by_a_decision_is_driven_on_by_the_resumed_parent() -> None:
    notes: list[str] = []
    child = researcher(
        call("note", text="x"), "ok", tools=[_note_tool(notes, requires_approval=True)]
    )
    parent = boss(child, call("researcher", input="x"), "Done.")
    runtime = Runtime(store=MemoryStore(), agents=[parent])
    paused = await runtime.run(parent, "x")
    [waiting] = await runtime.waiting_runs()

    queued = await runtime.approve(waiting.run_id, by="ana", resume=False)
    assert queued.status == "queued"
    done = await runtime.resume(paused.run_id)

    assert (done.status, notes) == ("completed", ["x"])
    assert (await runtime.store.get_run(waiting.run_id)).status == "completed"


async def _approval_round_trip(store: Any) -> None:
    notes: list[str] = []
    child = researcher(
        turn(None, call("note", text="n"), tokens_in=1000),
        turn("ok", tokens_in=1000),
        tools=[_note_tool(notes, requires_approval=True)],
    )
    parent = boss(child, call("researcher", input="x"), turn("Done.", tokens_in=1000))
    runtime = Runtime(store=store, agents=[parent], prices=PRICES)
    paused = await runtime.run(parent, "x")
    [waiting] = await runtime.waiting_runs()
    await runtime.approve(waiting.run_id, by="ana")

    done = await runtime.resume(paused.run_id)

    assert (done.status, done.cost_usd, notes) == ("completed", 3.0, ["n"])
    assert [r.run_id for r in await runtime.children(done.run_id)] == [waiting.run_id]


async def test_a_resumed_parent_joins_its_child_on_sqlite(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db")
    try:
        await _approval_round_trip(store)
    finally:
        await store.close()


async def test_a_resumed_parent_joins_its_child_on_postgres(
    postgres_url: str, postgres_schema: str
) -> None:
    store = PostgresStore(postgres_url, schema=postgres_schema)
    try:
        await _approval_round_trip(store)
    finally:
        await store.close()


async def test_when_the_waited_for_child_ends_its_parent_goes_back_to_the_queue() -> None:
    notes: list[str] = []
    child = researcher(
        call("note", text="x"), "ok", tools=[_note_tool(notes, requires_approval=True)]
    )
    parent = boss(child, call("researcher", input="x"), "Done.")
    runtime = Runtime(store=MemoryStore(), agents=[parent])
    paused = await runtime.run(parent, "x")
    [waiting] = await runtime.waiting_runs()

    await runtime.approve(waiting.run_id, by="ana")  # the child completes here

    queued = await runtime.store.get_run(paused.run_id)
    assert queued.status == "queued"
    recovery = await runtime.recover()  # what a worker does with the queue
    assert [(r.run_id, r.status) for r in recovery.results] == [(paused.run_id, "completed")]
    assert notes == ["x"]


async def test_a_parent_paused_for_another_reason_is_not_queued_when_a_child_ends() -> None:
    child = researcher("ok")
    parent = Agent(
        name="boss",
        model=ScriptedModel([call("researcher", input="x"), "never"], name="acme:big"),
        tools=[child.as_tool()],
        limits=Limits(max_steps=1),
    )
    runtime = Runtime(store=MemoryStore(), agents=[parent])

    result = await runtime.run(parent, "x")

    assert (result.status, result.reason and result.reason.code) == ("paused", "limit.max_steps")
    assert (await runtime.store.get_run(result.run_id)).status == "paused"


async def test_a_child_run_traces_under_the_call_that_started_it() -> None:
    provider, exporter = memory_provider()
    parent = boss(researcher("Paris."), call("researcher", input="capital?"), "Paris.")
    runtime = Runtime(
        store=MemoryStore(),
        observers=[Tracing(provider)],
        settings=KeelSettings.from_environ({}),
    )

    await runtime.run(parent, "Capital?")

    spans = {span.name: span for span in exporter.get_finished_spans()}
    call_span = spans["execute_tool researcher"].get_span_context()
    child_span = spans["invoke_agent researcher"]
    assert call_span is not None
    assert child_span.parent is not None
    assert child_span.parent.span_id == call_span.span_id
    assert child_span.parent.trace_id == call_span.trace_id


async def test_cancelling_a_parent_cancels_its_children_that_have_not_ended() -> None:
    child = researcher(call("note", text="x"), "ok", tools=[_note_tool([], requires_approval=True)])
    top = Agent(
        name="top",
        model=ScriptedModel([call("boss", input="go")]),
        tools=[boss(child, call("researcher", input="x"), "Done.").as_tool()],
    )
    runtime = Runtime(store=MemoryStore(), agents=[top])
    paused = await runtime.run(top, "go")
    [middle] = await runtime.children(paused.run_id)
    [waiting] = await runtime.waiting_runs()
    assert (middle.status, waiting.status) == ("paused", "awaiting_approval")

    cancelled = await runtime.cancel(paused.run_id, reason="not needed")

    assert cancelled.status == "cancelled"
    middle_now = await runtime.store.get_run(middle.run_id)
    child_now = await runtime.store.get_run(waiting.run_id)
    assert (middle_now.status, child_now.status) == ("cancelled", "cancelled")
    assert child_now.reason is not None
    assert f"its parent run {middle.run_id} was cancelled" in child_now.reason
    assert await runtime.waiting_runs() == []


async def test_a_cancelled_child_sends_its_parent_on_with_an_error_result() -> None:
    child = researcher(call("note", text="x"), "ok", tools=[_note_tool([], requires_approval=True)])
    parent = boss(child, call("researcher", input="x"), "The helper was stopped.")
    runtime = Runtime(store=MemoryStore(), agents=[parent])
    paused = await runtime.run(parent, "x")
    [waiting] = await runtime.waiting_runs()

    await runtime.cancel(waiting.run_id, reason="wrong order")
    done = await runtime.resume(paused.run_id)  # it was queued again when the child ended

    assert (done.status, done.output) == ("completed", "The helper was stopped.")
    seen = parent.model.requests[1].messages[-1]  # type: ignore[union-attr]
    assert isinstance(seen, ToolResultMessage)
    assert seen.is_error
    assert "cancelled" in seen.content


async def test_cancelling_a_parent_while_its_child_works_here_stops_and_cancels_both() -> None:
    entered = asyncio.Event()

    @tool(side_effects="read")
    async def slow(ctx: RunContext[None]) -> str:
        """Take a long time."""
        entered.set()
        await asyncio.sleep(3600)
        return "never"

    child = researcher(call("slow"), "ok", tools=[slow])
    parent = boss(child, call("researcher", input="x"), "Done.")
    runtime = Runtime(store=MemoryStore(), agents=[parent])
    running = asyncio.create_task(runtime.run(parent, "x"))
    await entered.wait()
    [record] = [r for r in await runtime.store.list_runs(limit=None) if r.agent == "boss"]

    await runtime.cancel(record.run_id, reason="stop")
    result = await running

    assert result.status == "cancelled"
    [child_record] = await runtime.children(record.run_id)
    assert child_record.status == "cancelled"


async def test_two_delegated_calls_in_one_turn_are_two_children_and_both_costs_count() -> None:
    child = researcher(turn("a", tokens_in=1000), turn("b", tokens_in=2000))
    parent = boss(
        child,
        [call("researcher", input="one"), call("researcher", input="two")],
        "Both done.",
    )
    runtime = Runtime(store=MemoryStore(), prices=PRICES)

    result = await runtime.run(parent, "Do both")

    children = await runtime.children(result.run_id)
    assert len({c.run_id for c in children}) == 2
    assert sorted(c.cost_usd or 0.0 for c in children) == [1.0, 2.0]
    assert result.cost_usd == 3.0

"""Time travel: steps, replay that reproduces a run exactly without calling anything, forks
that diverge only after their step, and diffs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from keel import Agent, Limits, Runtime, tool
from keel._core.codec import event_to_dict
from keel._core.events import Event, RunStarted
from keel.errors import UsageError
from keel.testing import MemoryStore, ScriptedModel, call

CALLS: list[str] = []


@tool(idempotent=True, side_effects="read")
def lookup(order_id: str) -> dict[str, str]:
    """Look an order up."""
    CALLS.append(order_id)
    return {"order_id": order_id, "status": "shipped"}


@tool(requires_approval=True)
def refund(order_id: str, amount_usd: float) -> str:
    """Refund an order."""
    CALLS.append(f"refund {order_id}")
    return "refunded"


class Answer(BaseModel):
    status: str


def rich_script() -> list[Any]:
    """A run that exercises most of the loop: calls, a bad call, a refused answer, approval."""
    return [
        call("lookup", order_id="1"),
        call("lookup", "{broken"),
        [call("lookup", order_id="2"), call("refund", order_id="2", amount_usd=5)],
        "shipped",  # not JSON: sent back
        '{"status": "shipped"}',
    ]


def agent(model: Any = None, **options: Any) -> Agent[Answer]:
    return Agent(
        name="desk",
        model=model or ScriptedModel([]),
        tools=[lookup, refund],
        output_type=Answer,
        **options,
    )


async def recorded_run(runtime: Runtime) -> str:
    first = agent(ScriptedModel(rich_script()), limits=Limits(max_steps=2))
    paused = await runtime.run(first, "Where are my orders?")
    assert paused.status == "paused"
    waiting = await runtime.resume(paused.run_id, first, limits=Limits(max_steps=10))
    assert waiting.status == "awaiting_approval"
    done = await runtime.approve(waiting.run_id, by="ana", agent=first)
    assert done.status == "completed"
    return done.run_id


def comparable(events: list[Event]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in event_to_dict(e).items() if k not in ("at", "latency_ms", "run_id")}
        for e in events
    ]


async def test_steps_group_each_turn_with_its_calls_and_decisions() -> None:
    runtime = Runtime(store=MemoryStore())
    run_id = await recorded_run(runtime)

    steps = await runtime.steps(run_id)

    assert [s.number for s in steps] == [1, 2, 3, 4, 5]
    assert [len(s.tools) for s in steps] == [1, 1, 2, 0, 0]
    assert steps[1].tools[0].started is None  # invalid arguments: never started
    assert steps[1].tools[0].finished is not None
    assert [d.decision for d in steps[2].decisions] == ["approve"]


async def test_replay_reproduces_the_run_without_calling_anything() -> None:
    runtime = Runtime(store=MemoryStore())
    run_id = await recorded_run(runtime)
    original = await runtime.store.load(run_id)
    calls_before = list(CALLS)

    replayed = await runtime.replay(run_id, agent())  # its model has no script at all

    assert replayed.identical, replayed.differences
    assert replayed.state.output == {"status": "shipped"}
    assert comparable(replayed.events) == comparable(original)
    assert calls_before == CALLS  # no tool ran
    assert await runtime.store.load(run_id) == original  # nothing was written


async def test_replay_with_changed_code_shows_where_it_diverges() -> None:
    runtime = Runtime(store=MemoryStore())
    run_id = await recorded_run(runtime)

    @tool(name="lookup", idempotent=True)
    def stricter_lookup(order_id: str, region: str) -> str:
        """Look an order up, in a region."""
        return "x"

    changed = Agent(
        name="desk", model=ScriptedModel([]), tools=[stricter_lookup, refund], output_type=Answer
    )
    replayed = await runtime.replay(run_id, changed)

    assert not replayed.identical
    assert "region: Field required" in replayed.differences[0]


async def test_a_fork_copies_steps_up_to_n_and_diverges_only_after() -> None:
    runtime = Runtime(store=MemoryStore())
    model = ScriptedModel(
        [call("lookup", order_id="1"), call("lookup", order_id="2"), '{"status": "original"}']
    )
    source = await runtime.run(agent(model), "Check my orders")

    fork_model = ScriptedModel([call("lookup", order_id="9"), '{"status": "forked"}'])
    forked = await runtime.fork(source.run_id, agent(fork_model), at_step=1)

    assert forked.output == Answer(status="forked")
    source_events = await runtime.store.load(source.run_id)
    fork_events = await runtime.store.load(forked.run_id)
    first = fork_events[0]
    assert isinstance(first, RunStarted)
    assert (first.forked_from, first.fork_step) == (source.run_id, 1)
    # Step 1 (the answer, the call started and finished) is identical; then they part.
    assert comparable(fork_events[1:4]) == comparable(source_events[1:4])
    assert comparable(fork_events[4:5]) != comparable(source_events[4:5])
    # The fork's model was asked only for what comes after step 1, with step 1 in view.
    assert [m.role for m in fork_model.requests[0].messages] == ["user", "assistant", "tool"]

    diff = await runtime.diff(source.run_id, forked.run_id)
    assert diff.first_divergent_step == 2
    assert {d.what for d in diff.differences if d.step is None} == {"output"}


async def test_a_fork_can_change_the_input_or_a_tool_result() -> None:
    runtime = Runtime(store=MemoryStore())
    model = ScriptedModel([call("lookup", order_id="1"), '{"status": "shipped"}'])
    source = await runtime.run(agent(model), "Where is order 1?", thread="t")
    step = (await runtime.steps(source.run_id))[0]
    call_id = step.tools[0].call.id

    fork_model = ScriptedModel(['{"status": "lost"}'])
    forked = await runtime.fork(
        source.run_id,
        agent(fork_model),
        at_step=1,
        input="Where is order 1, really?",
        tool_results={call_id: '{"status": "lost in transit"}'},
    )

    seen = fork_model.requests[0].messages
    assert seen[0].content == "Where is order 1, really?"
    assert seen[-1].content == '{"status": "lost in transit"}'
    assert forked.output == Answer(status="lost")
    # Forks share the source's history but never add to its thread.
    assert len((await runtime.store.thread_history("t")).messages) == 4


async def test_fork_arguments_are_checked() -> None:
    runtime = Runtime(store=MemoryStore())
    source = await runtime.run(agent(ScriptedModel(['{"status": "x"}'])), "Hi")
    with pytest.raises(UsageError, match="at_step must be between 0 and 1"):
        await runtime.fork(source.run_id, agent(), at_step=5)
    with pytest.raises(UsageError, match="no result in steps 1-1: call_nope"):
        await runtime.fork(source.run_id, agent(), at_step=1, tool_results={"call_nope": "x"})


async def test_identical_runs_have_no_differences() -> None:
    runtime = Runtime(store=MemoryStore())
    one = await runtime.run(agent(ScriptedModel(['{"status": "x"}'])), "Hi")
    two = await runtime.run(agent(ScriptedModel(['{"status": "x"}'])), "Hi")

    diff = await runtime.diff(one.run_id, two.run_id)

    assert diff.differences == []
    assert diff.first_divergent_step is None

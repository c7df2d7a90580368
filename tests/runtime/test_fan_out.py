"""Fan-out: a tool runs several agents as child runs at once, at most ``max_concurrency`` at a
time, and gets their results in order; each child is durable on its own, and a call that runs
again reuses the children that finished."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keel import Agent, Price, RunContext, RunResult, Runtime, Usage, fan_out, tool
from keel._core.delegation import child_run_id
from keel.errors import UsageError
from keel.events import ToolCallFinished
from keel.messages import AssistantMessage, ModelRequest, ModelResponse, UserMessage
from keel.testing import FunctionModel, MemoryStore, ScriptedModel, call

PRICES = {"acme:*": Price(input_per_mtok=1000.0, output_per_mtok=2000.0)}


class Gauge:
    """How many children are inside a model call at once, and the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.calls: list[str] = []

    async def answer(self, request: ModelRequest) -> ModelResponse:
        text = next(m.content for m in request.messages if isinstance(m, UserMessage))
        self.calls.append(text)
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            for _ in range(5):  # let the others in, if the gate allows them
                await asyncio.sleep(0)
        finally:
            self.now -= 1
        return ModelResponse(
            message=AssistantMessage(content=f"{text} done"),
            usage=Usage(requests=1, input_tokens=1000),  # $1 each
        )


def parent_with(fan: Any, *script: Any) -> Agent[str]:
    return Agent(name="lead", model=ScriptedModel(list(script), name="acme:lead"), tools=[fan])


async def test_children_run_at_most_max_concurrency_at_once_and_come_back_in_order() -> None:
    gauge = Gauge()
    worker = Agent(name="worker", model=FunctionModel(gauge.answer, name="acme:w"))
    seen: list[list[str]] = []

    @tool(idempotent=True)
    async def survey(ctx: RunContext[None], topics: list[str]) -> str:
        """Ask a worker about each topic."""
        results = await fan_out(ctx, [(worker, t) for t in topics], max_concurrency=2)
        seen.append([r.output for r in results])
        return "; ".join(r.output for r in results)

    parent = parent_with(survey, call("survey", topics=["a", "b", "c", "d", "e"]), "All done.")
    runtime = Runtime(store=MemoryStore(), prices=PRICES)

    result = await runtime.run(parent, "Survey five topics")

    assert result.status == "completed"
    assert gauge.most == 2
    assert seen == [["a done", "b done", "c done", "d done", "e done"]]
    children = await runtime.children(result.run_id)
    events = await runtime.store.load(result.run_id)
    [finished] = [e for e in events if isinstance(e, ToolCallFinished)]
    expected = [child_run_id(result.run_id, finished.call.id, i) for i in range(5)]
    assert [c.run_id for c in finished.children] == expected
    assert sorted(c.run_id for c in children) == sorted(expected)
    assert result.cost_usd == 5.0  # the lead's scripted turns are free; $1 per child
    assert result.usage.input_tokens == 5000


async def test_a_fan_out_of_one_at_a_time_never_overlaps() -> None:
    gauge = Gauge()
    worker = Agent(name="worker", model=FunctionModel(gauge.answer, name="acme:w"))

    @tool(idempotent=True)
    async def survey(ctx: RunContext[None]) -> list[str]:
        """Ask about three topics."""
        results = await fan_out(
            ctx, [(worker, "x"), (worker, "y"), (worker, "z")], max_concurrency=1
        )
        return [r.output for r in results]

    result = await Runtime(store=MemoryStore()).run(parent_with(survey, call("survey"), "ok"), "go")

    assert result.status == "completed"
    assert (gauge.most, gauge.calls) == (1, ["x", "y", "z"])


async def test_a_tool_that_is_not_safe_to_repeat_may_not_fan_out() -> None:
    worker = Agent(name="worker", model=ScriptedModel([]))
    errors: list[str] = []

    @tool
    async def survey(ctx: RunContext[None]) -> str:
        """Fan out from a tool that is not safe to repeat."""
        try:
            await fan_out(ctx, [(worker, "x")])
        except UsageError as exc:
            errors.append(str(exc))
            raise
        return "never"

    result = await Runtime(store=MemoryStore()).run(parent_with(survey, call("survey"), "ok"), "go")

    assert result.status == "completed"
    [error] = errors
    assert "tool 'survey' calls fan_out but is not safe to repeat" in error
    assert "idempotent=True" in error


@pytest.mark.parametrize(
    ("tasks", "limit", "message"),
    [
        ([("x", "y")], 1, "fan_out takes (agent, input) pairs"),
        ([], 0, "max_concurrency must be at least 1"),
        ([], True, "max_concurrency must be a positive int"),
    ],
)
async def test_bad_fan_out_arguments_are_refused(tasks: Any, limit: Any, message: str) -> None:
    errors: list[str] = []

    @tool(idempotent=True)
    async def survey(ctx: RunContext[None]) -> str:
        """Fan out badly."""
        try:
            await fan_out(ctx, tasks, max_concurrency=limit)
        except UsageError as exc:
            errors.append(str(exc))
        return "ok"

    await Runtime(store=MemoryStore()).run(parent_with(survey, call("survey"), "ok"), "go")

    assert len(errors) == 1
    assert message in errors[0]


async def test_a_child_waiting_for_a_person_pauses_the_parent_and_finished_ones_are_reused() -> (
    None
):
    answered = Agent(name="quick", model=ScriptedModel(["one", "two"], name="acme:q"))

    @tool(requires_approval=True)
    def send(text: str) -> str:
        """Send a message (a person approves)."""
        return "sent"

    careful = Agent(
        name="careful", model=ScriptedModel([call("send", text="hi"), "sent it"]), tools=[send]
    )
    outcomes: list[list[str]] = []

    @tool(idempotent=True)
    async def survey(ctx: RunContext[None]) -> str:
        """Ask everyone."""
        results: list[RunResult[Any]] = await fan_out(
            ctx, [(answered, "1"), (careful, "2"), (answered, "3")]
        )
        outcomes.append([r.status for r in results])
        return ",".join(r.output for r in results)

    parent = parent_with(survey, call("survey"), "Everyone answered.")
    runtime = Runtime(store=MemoryStore(), agents=[parent])

    paused = await runtime.run(parent, "go")

    assert (paused.status, paused.reason and paused.reason.code) == ("paused", "child_waiting")
    [waiting] = await runtime.waiting_runs()
    assert waiting.agent == "careful"
    assert outcomes == []  # the tool stopped at the waiting child
    await runtime.approve(waiting.run_id, by="ana")

    done = await runtime.resume(paused.run_id)

    assert (done.status, done.output) == ("completed", "Everyone answered.")
    assert outcomes == [["completed", "completed", "completed"]]
    # The children that had finished were not run again: their script had two answers.
    answered.model.assert_complete()  # type: ignore[union-attr]
    assert len(await runtime.children(paused.run_id)) == 3
    replay = await runtime.replay(paused.run_id)  # the wait and the children, from the journal
    assert replay.identical, replay.differences


async def test_a_failed_child_is_in_the_results_for_the_tool_to_judge() -> None:
    failing = Agent(name="failing", model=ScriptedModel([]))  # no answer: the run fails
    fine = Agent(name="fine", model=ScriptedModel(["fine"]))
    seen: list[tuple[str, str]] = []

    @tool(idempotent=True)
    async def both(ctx: RunContext[None]) -> str:
        """Ask both."""
        for result in await fan_out(ctx, [(failing, "x"), (fine, "y")]):
            seen.append((result.agent, result.status))
        return "judged"

    result = await Runtime(store=MemoryStore()).run(parent_with(both, call("both"), "ok"), "go")

    assert result.status == "completed"
    assert seen == [("failing", "failed"), ("fine", "completed")]

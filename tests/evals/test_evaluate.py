"""evaluate(): every case run is a journaled run, with fresh deps and a model per case,
the case's history as its thread, repeats, bounded concurrency and progress."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from keel import Agent, RunContext, Runtime, tool
from keel.errors import UsageError
from keel.evals import (
    Case,
    Contains,
    Dataset,
    ExpectedCall,
    State,
    ToolCalls,
    evaluate,
    evaluate_sync,
)
from keel.messages import AssistantMessage, ModelRequest, UserMessage
from keel.testing import FunctionModel, MemoryStore, ScriptedModel, call


@tool
def refund(ctx: RunContext[dict[str, list[str]]], order_id: str) -> str:
    """Refund an order."""
    ctx.deps["refunds"].append(order_id)
    return f"refunded {order_id}"


def scripted(case: Case) -> ScriptedModel:
    order = case.metadata["order"]
    return ScriptedModel([call("refund", order_id=order), f"Refunded {order}."])


CASES = Dataset(
    [
        Case(
            id=f"c{i}",
            input=f"refund o-{i}",
            reference=f"Refunded o-{i}.",
            expected_tools=[ExpectedCall("refund", {"order_id": f"o-{i}"})],
            metadata={"order": f"o-{i}"},
            tags=["even" if i % 2 == 0 else "odd"],
        )
        for i in range(4)
    ]
)


async def test_each_case_run_is_journaled_with_fresh_deps_and_its_own_model(
    tmp_path: Path,
) -> None:
    agent = Agent(name="support", tools=[refund])
    made: list[dict[str, list[str]]] = []

    def fresh(case: Case) -> dict[str, list[str]]:
        made.append({"refunds": []})
        return made[-1]

    def refunded(sample: Any) -> bool:
        return bool(sample.deps["refunds"] == [sample.case.metadata["order"]])

    async with Runtime(store=tmp_path / "keel.db") as runtime:
        report = await evaluate(
            agent,
            CASES,
            scorers=[Contains(), ToolCalls(), State(refunded)],
            runtime=runtime,
            deps=fresh,
            model=scripted,
            repeats=2,
        )
        assert len(made) == 8  # a fresh desk per case run
        for case in report.cases:
            assert case.passed
            assert len(case.run_ids) == 2
            for run_id in case.run_ids:
                record = await runtime.get_run(run_id)
                assert record.agent == "support"
                assert record.input == f"refund o-{case.id[1:]}"
    assert report.pass_rate == 1.0
    assert report.mean_scores == {
        "contains": 1.0,
        "tool_calls": 1.0,
        "state": 1.0,
    }
    assert report.scorers == ("contains", "tool_calls", "state")


async def test_a_cases_history_is_the_earlier_conversation_of_its_thread() -> None:
    model = FunctionModel(lambda request: f"{len(request.messages)} messages", record=True)
    case = Case(
        id="h",
        input="and now?",
        history=[UserMessage(content="Hi"), AssistantMessage(content="Hello, how can I help?")],
    )
    async with Runtime(store=MemoryStore()) as runtime:
        report = await evaluate(Agent(name="a", model=model), [case], scorers=[], runtime=runtime)
        run_id = report.case("h").run_ids[0]
        record = await runtime.get_run(run_id)
        history = await runtime.store.thread_history(record.thread_id)
    assert [m.content for m in model.requests[0].messages] == [
        "Hi",
        "Hello, how can I help?",
        "and now?",
    ]
    assert [m.content for m in history.messages][:2] == ["Hi", "Hello, how can I help?"]
    assert report.case("h").passed  # no scorers: passes when the run completed


async def test_a_case_that_cannot_run_fails_alone_with_its_error() -> None:
    def model_for(case: Case) -> ScriptedModel:
        if case.id == "c1":
            raise RuntimeError("no script for c1")
        return scripted(case)

    agent = Agent(name="support", tools=[refund])
    report = await evaluate(
        agent, CASES, scorers=[Contains()], model=model_for, deps=lambda c: {"refunds": []}
    )
    failed = report.case("c1")
    assert not failed.passed
    assert failed.run_ids == []
    assert failed.repeats[0].error == "RuntimeError: no script for c1"
    assert failed.failures() == ["repeat 0: RuntimeError: no script for c1"]
    assert [c.passed for c in report.cases] == [True, False, True, True]


async def test_runs_stay_within_the_concurrency_and_progress_is_reported() -> None:
    running = peak = 0

    async def slow(request: ModelRequest) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return "ok"

    seen: list[tuple[int, int]] = []
    cases = [Case(id=str(i), input="x") for i in range(9)]
    report = await evaluate(
        Agent(name="a", model=FunctionModel(slow)),
        cases,
        scorers=[],
        concurrency=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert peak == 3
    assert seen[-1] == (9, 9)
    assert len(seen) == 9
    assert report.pass_rate == 1.0


def test_evaluate_sync_and_bad_options(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    Dataset([Case(id="a", input="hi", reference="rules")]).save(path)
    agent = Agent(name="a", model=FunctionModel(lambda r: "rules rule"))
    report = evaluate_sync(agent, path, scorers=[Contains()])
    assert report.dataset == "cases.jsonl"
    assert report.pass_rate == 1.0
    bad: list[tuple[dict[str, Any], str]] = [
        ({"repeats": 0}, "repeats must be"),
        ({"concurrency": 0}, "concurrency must be"),
        ({"scorers": [Contains(), Contains()]}, "two scorers have the same name"),
        ({"model": "rules"}, "model must be a callable"),
    ]
    for options, message in bad:
        with pytest.raises(UsageError, match=message):
            evaluate_sync(agent, path, **{"scorers": [], **options})


async def test_an_eval_with_history_runs_on_postgresql(
    postgres_url: str, postgres_schema: str
) -> None:
    from keel.stores import PostgresStore

    model = FunctionModel(lambda request: f"{len(request.messages)} messages")
    cases = [
        Case(id="h", input="and now?", history=[UserMessage(content="Hi")], reference="2 messages")
    ]
    async with (
        PostgresStore(postgres_url, schema=postgres_schema) as store,
        Runtime(store=store) as runtime,
    ):
        report = await evaluate(
            Agent(name="a", model=model), cases, scorers=[Contains()], runtime=runtime
        )
        record = await runtime.get_run(report.case("h").run_ids[0])
    assert report.pass_rate == 1.0
    assert record.status == "completed"


def test_a_progress_bar_can_be_drawn() -> None:
    cases = [Case(id=str(i), input="x") for i in range(3)]
    report = evaluate_sync(
        Agent(name="a", model=FunctionModel(lambda r: "ok")), cases, scorers=[], progress=True
    )
    assert report.pass_rate == 1.0

"""Decision history and feedback through the runtime: runs found by who they were for and the
tools they called, steps as decision records, feedback recorded, listed and exported."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keel import Agent, Runtime, tool
from keel.errors import RunNotFoundError, UsageError
from keel.messages import ToolCall
from keel.ports import RunQuery
from keel.stores import MemoryStore
from keel.testing import ScriptedModel, call


def support(*answers: str) -> Agent[str]:
    @tool
    def refund(order_id: str) -> str:
        """Refund an order."""
        return f"refunded {order_id}"

    script: list[str | ToolCall] = [*answers] or [call("refund", order_id="o-1"), "Refunded."]
    return Agent(name="support", model=ScriptedModel(script), tools=[refund])


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    async with Runtime(store=MemoryStore(check_json=True)) as runtime:
        yield runtime


async def test_runs_are_found_by_tenant_user_and_tool(runtime: Runtime) -> None:
    first = await runtime.run(support(), "refund o-1", tenant="acme", user="ann")
    second = await runtime.run(support("No tools needed."), "hello", tenant="globex")
    record = await runtime.get_run(first.run_id)
    assert (record.tenant, record.user, record.tools) == ("acme", "ann", ("refund",))
    page = await runtime.query_runs(tool="refund")
    assert [r.run_id for r in page.runs] == [first.run_id]
    assert page.next is None
    page = await runtime.query_runs(tenant="globex", since=timedelta(hours=1))
    assert [r.run_id for r in page.runs] == [second.run_id]
    page = await runtime.query_runs(RunQuery(user="ann", status="completed"))
    assert [r.run_id for r in page.runs] == [first.run_id]
    assert (await runtime.query_runs(since=datetime(2999, 1, 1, tzinfo=UTC))).runs == []


async def test_pages_carry_the_next_cursor(runtime: Runtime) -> None:
    made = [(await runtime.run(support("ok"), f"q{n}")).run_id for n in range(5)]
    first = await runtime.query_runs(agent="support", limit=2)
    assert len(first.runs) == 2
    assert first.next is not None
    second = await runtime.query_runs(agent="support", limit=2, before=first.next)
    third = await runtime.query_runs(agent="support", limit=2, before=second.next)
    assert third.next is None
    seen = [r.run_id for page in (first, second, third) for r in page.runs]
    assert sorted(seen) == sorted(made)
    assert len(set(seen)) == 5


async def test_query_mistakes_are_usage_errors(runtime: Runtime) -> None:
    with pytest.raises(UsageError, match="not both"):
        await runtime.query_runs(RunQuery(agent="a"), tenant="b")
    with pytest.raises(UsageError, match="since must be seconds since the epoch"):
        await runtime.query_runs(since="1h")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="limit must be"):
        await runtime.query_runs(limit=0)


async def test_steps_are_decision_records(runtime: Runtime) -> None:
    result = await runtime.run(support(), "refund o-1")
    steps = await runtime.steps(result.run_id)
    first = steps[0].to_dict()
    assert first["actions"][0]["tool"] == "refund"
    assert json.loads(first["actions"][0]["arguments"]) == {"order_id": "o-1"}
    assert first["actions"][0]["result"] == "refunded o-1"
    assert first["error"] is None
    assert first["input_tokens"] >= 0
    assert first["latency_ms"] >= 0
    assert steps[1].text == "Refunded."


async def test_feedback_is_recorded_listed_and_checked(runtime: Runtime) -> None:
    result = await runtime.run(support(), "refund o-1")
    run_id = result.run_id
    given = await runtime.add_feedback(run_id, score=1, label="golden", by="ann")
    on_step = await runtime.add_feedback(run_id, step=1, score=-1, comment="wrong order")
    assert await runtime.feedback(run_id) == [given, on_step]
    assert await runtime.list_feedback(label="golden") == [given]
    assert await runtime.list_feedback(max_score=0, agent="support") == [on_step]
    with pytest.raises(UsageError, match="step must be from 1 to 2, got 3"):
        await runtime.add_feedback(run_id, step=3, score=1)
    with pytest.raises(UsageError, match="score must be a number from -1 to 5"):
        await runtime.add_feedback(run_id, score=10)
    with pytest.raises(RunNotFoundError):
        await runtime.add_feedback("run_nope", score=1)
    assert len(await runtime.feedback(run_id)) == 2


async def test_eval_cases_are_exported_as_json_lines(runtime: Runtime, tmp_path: Path) -> None:
    result = await runtime.run(support(), "refund o-1", thread="t-1")
    other = await runtime.run(support("Nothing to do."), "thanks", thread="t-1")
    await runtime.add_feedback(result.run_id, score=5, label="golden", comment="perfect")
    await runtime.add_feedback(result.run_id, step=1, label="refund")
    await runtime.add_feedback(other.run_id, score=1, label="bad")
    path = tmp_path / "cases.jsonl"
    cases = await runtime.export_eval_cases(path, min_score=5)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == cases
    assert len(cases) == 1
    case = cases[0]
    assert case["input"] == "refund o-1"
    assert case["reference"] == "Refunded."
    assert case["expected_tool_calls"] == [{"name": "refund", "arguments": {"order_id": "o-1"}}]
    assert case["tags"] == ["golden", "refund"]
    assert case["metadata"]["score"] == 5
    assert case["metadata"]["comment"] == "perfect"
    buffer = io.StringIO()
    everything = await runtime.export_eval_cases(buffer)
    assert [c["id"] for c in everything] == [other.run_id, result.run_id]
    # The second run of the thread carries the first one's conversation as its history.
    later = everything[0]
    assert [m["content"] for m in later["history"]][:1] == ["refund o-1"]
    assert len(buffer.getvalue().splitlines()) == 2

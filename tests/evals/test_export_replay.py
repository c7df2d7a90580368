"""Production runs become eval cases (by id, feedback label, decision-history filter), and
replaying them against changed code fails where the tool calls or the output change."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel import Agent, Limits, Runtime, tool
from keel.errors import UsageError
from keel.evals import Case, Dataset, evaluate, export_cases, replay_model, replay_scorers
from keel.messages import UserMessage
from keel.testing import ScriptedModel, call


@tool
def refund(order_id: str) -> str:
    """Refund an order."""
    return f"refunded {order_id}"


@tool
def lookup(order_id: str) -> str:
    """Find an order."""
    return f"order {order_id} shipped"


def production() -> Agent[str]:
    return Agent(name="support", tools=[refund, lookup])


async def record(runtime: Runtime) -> dict[str, str]:
    """Three production runs: a refund (thumbs down), a lookup, and a lookup on a thread."""
    runs = {}
    model = ScriptedModel([call("refund", order_id="o-1"), "Refunded o-1."])
    runs["refund"] = (await runtime.run(production(), "refund o-1", model=model)).run_id
    model = ScriptedModel([call("lookup", order_id="o-2"), "o-2 shipped."])
    runs["lookup"] = (await runtime.run(production(), "where is o-2", model=model)).run_id
    await runtime.run(production(), "hi", thread="t", model=ScriptedModel(["Hello."]))
    model = ScriptedModel([call("lookup", order_id="o-3"), "o-3 shipped."])
    runs["thread"] = (await runtime.run(production(), "o-3?", thread="t", model=model)).run_id
    await runtime.add_feedback(runs["refund"], score=-1, label="bad")
    return runs


async def test_runs_are_exported_by_id_label_and_filter(tmp_path: Path) -> None:
    async with Runtime(store=tmp_path / "keel.db") as runtime:
        runs = await record(runtime)
        by_label = await export_cases(runtime, label="bad", output=tmp_path / "bad.jsonl")
        by_id = await export_cases(runtime, run_ids=[runs["thread"]])
        by_tool = await export_cases(runtime, tool="lookup")
        both = await export_cases(runtime, label="bad", tool="lookup")
        with pytest.raises(UsageError, match="say which runs to export"):
            await export_cases(runtime)
    [bad] = by_label
    assert bad.id == runs["refund"]
    assert bad.input == "refund o-1"
    assert bad.reference == "Refunded o-1."
    assert bad.tags == ("bad",)
    assert [str(c) for c in bad.expected_tools] == ['refund({"order_id": "o-1"})']
    assert bad.metadata["run_id"] == runs["refund"]
    assert bad.metadata["score"] == -1
    assert len(bad.metadata["responses"]) == 2
    assert Dataset.load(tmp_path / "bad.jsonl").cases == (bad,)
    [threaded] = by_id
    assert threaded.history == (UserMessage(content="hi"), threaded.history[1])
    assert threaded.history[1].content == "Hello."
    assert [c.id for c in by_tool] == [runs["thread"], runs["lookup"]]  # newest first
    assert both == []  # the labelled run never called lookup


async def test_a_replay_passes_on_the_same_code_without_calling_a_model(tmp_path: Path) -> None:
    async with Runtime(store=tmp_path / "keel.db") as runtime:
        runs = await record(runtime)
        cases = await export_cases(runtime, run_ids=list(runs.values()))
        report = await evaluate(
            production(), cases, scorers=replay_scorers(), runtime=runtime, model=replay_model
        )
    assert report.pass_rate == 1.0, [c.failures() for c in report.cases]
    assert report.scorers == ("replay_tool_calls", "replay_output")


async def test_a_replay_fails_where_the_tool_calls_or_the_output_change(tmp_path: Path) -> None:
    @tool(name="refund")
    def refund_v2(order_id: str, amount: float) -> str:
        """Refund part of an order (now needs an amount)."""
        return "refunded"

    @tool(name="lookup")
    def lookup_v2(order_id: str) -> str:
        """Find an order."""
        return f"order {order_id} lost"

    changed = Agent(name="support", tools=[refund_v2, lookup_v2])
    async with Runtime(store=tmp_path / "keel.db") as runtime:
        runs = await record(runtime)
        cases = await export_cases(runtime, run_ids=[runs["refund"], runs["lookup"]])
        report = await evaluate(
            changed, cases, scorers=replay_scorers(), runtime=runtime, model=replay_model
        )
    refund_case, lookup_case = report.case(runs["refund"]), report.case(runs["lookup"])
    assert not refund_case.passed
    assert not lookup_case.passed
    [refund_score, _] = refund_case.repeats[0].scores
    assert refund_score.detail == "call #1 refund: was done, now tool_arguments_invalid"
    [lookup_score, output_score] = lookup_case.repeats[0].scores
    assert lookup_score.detail == (
        "call #1 lookup: result was 'order o-2 shipped', now 'order o-2 lost'"
    )
    assert output_score.passed  # the model's recorded answer did not change


async def test_cases_without_recorded_answers_replay_from_the_source_journal(
    tmp_path: Path,
) -> None:
    async with Runtime(store=tmp_path / "keel.db") as runtime:
        runs = await record(runtime)
        exported = await runtime.export_eval_cases(label="bad")  # no recorded answers
        case = Case.from_dict(exported[0])
        with pytest.raises(UsageError, match="no recorded model answers"):
            replay_model(case)
        events = await runtime.store.load(runs["refund"])
        model = replay_model(case, events)
        report = await evaluate(
            production(), [case], scorers=replay_scorers(), runtime=runtime, model=lambda c: model
        )
    assert report.pass_rate == 1.0


async def test_a_run_that_did_not_complete_replays_to_no_output(tmp_path: Path) -> None:
    async with Runtime(store=tmp_path / "keel.db") as runtime:
        looping = ScriptedModel([call("lookup", order_id="1")] * 3)
        agent = Agent(name="support", tools=[refund, lookup], limits=Limits(max_steps=3))
        stopped = await runtime.run(agent, "loop", model=looping)
        assert stopped.status == "paused"
        cases = await export_cases(runtime, run_ids=[stopped.run_id])
        assert cases[0].reference is None
        report = await evaluate(
            agent, cases, scorers=replay_scorers(), runtime=runtime, model=replay_model
        )
    assert report.pass_rate == 1.0, report.cases[0].failures()

"""Static checks of keel.evals' types: scorers of every accepted shape, factories for deps and
models, and what a report gives back. Nothing here runs at test time."""

from __future__ import annotations

from typing import assert_type

from keel import Agent, Runtime
from keel.evals import (
    Case,
    Comparison,
    Dataset,
    ExpectedCall,
    Report,
    Sample,
    Score,
    State,
    ToolCallRecord,
    ToolCalls,
    evaluate,
)
from keel.testing import ScriptedModel


def exact_refunds(sample: Sample) -> bool:
    return bool(sample.deps)


async def judged(sample: Sample) -> Score:
    return Score("mine", 1.0, True)


def share(sample: Sample) -> float:
    calls: ToolCallRecord = sample.tool_calls[0]
    return 1.0 if calls.name else 0.0


async def typed_evals(runtime: Runtime, baseline: Report) -> None:
    dataset = Dataset([Case(id="a", input="hi", expected_tools=[ExpectedCall("refund")])])
    report = await evaluate(
        Agent(name="a"),
        dataset,
        scorers=[exact_refunds, judged, share, ToolCalls("subset"), State(exact_refunds)],
        runtime=runtime,
        deps=lambda case: {"refunds": []},
        model=lambda case: ScriptedModel(["ok"]),
    )
    assert_type(report, Report)
    assert_type(report.compare(baseline), Comparison)
    assert_type(report.mean_scores, dict[str, float])
    assert_type(report.total_cost, float | None)
    assert_type(report.cases[0].run_ids, list[str])

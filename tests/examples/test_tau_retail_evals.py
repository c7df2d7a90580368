"""The retail test tasks as a keel.evals dataset: every case passes the state and tool-call
scorers with its scripted model, and a model that changes nothing fails the cases that need a
change."""

from __future__ import annotations

import pytest
from examples.tau_retail import RetailDB, build_agent, expected_state
from examples.tau_retail.evals import deps_for, model_for, retail_dataset, state_matches
from examples.tau_retail.tasks import load_tasks

from keel import evals
from keel.testing import ScriptedModel
from tests.examples.corpus import retail_corpus


@pytest.mark.parametrize("grouped", [False, True])
async def test_every_retail_case_passes_the_state_scorer(grouped: bool) -> None:
    retail_corpus()
    dataset = retail_dataset(grouped=grouped)
    assert len(dataset.cases) == 115
    report = await evals.evaluate(
        build_agent(),
        dataset,
        scorers=[evals.State(state_matches), evals.ToolCalls("exact")],
        deps=deps_for,
        model=model_for,
    )
    assert report.pass_rate == 1.0


async def test_a_model_that_changes_nothing_fails_the_cases_that_need_a_change() -> None:
    retail_corpus()
    pristine = RetailDB.load()
    unchanged = sum(expected_state(pristine, t).same_state(pristine) for t in load_tasks())
    # 2 tasks with no actions, 6 that only look up, 2 hand-overs, 1 refused exchange
    assert unchanged == 11
    report = await evals.evaluate(
        build_agent(),
        retail_dataset(),
        scorers=[evals.State(state_matches)],
        deps=deps_for,
        model=lambda case: ScriptedModel(["I cannot help with that."]),
    )
    assert report.pass_rate == pytest.approx(unchanged / 115)

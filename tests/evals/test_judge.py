"""LLM-as-judge with a scripted judge model: its verdicts, its runs journaled on the eval's
runtime, and its cache (the same rubric, input and output are judged once)."""

from __future__ import annotations

import asyncio
import json

import pytest

from keel import Agent, Runtime
from keel.evals import Case, Dataset, Judge, Sample, evaluate
from keel.messages import ModelRequest, UserMessage
from keel.testing import FunctionModel, MemoryStore, ScriptedModel


def verdict(score: float, reason: str = "because") -> str:
    return json.dumps({"score": score, "reason": reason})


def echo() -> Agent[str]:
    def answer(request: ModelRequest) -> str:
        last = request.messages[-1]
        assert isinstance(last, UserMessage)
        return f"echo: {last.content}"

    return Agent(name="echo", model=FunctionModel(answer))


async def test_the_judge_grades_with_its_rubric_and_each_judgment_is_a_run() -> None:
    judge_model = ScriptedModel([verdict(0.8, "polite and right"), verdict(0.2, "rude")])
    judge = Judge(judge_model, "Is the answer polite?", threshold=0.5)
    store = MemoryStore()
    dataset = Dataset([Case(id="a", input="hi", reference="hello"), Case(id="b", input="bye")])
    async with Runtime(store=store) as runtime:
        report = await evaluate(echo(), dataset, scorers=[judge], runtime=runtime, concurrency=1)
        judged = [s for c in report.cases for r in c.repeats for s in r.scores]
        assert [(s.value, s.passed) for s in judged] == [(0.8, True), (0.2, False)]
        assert judged[0].detail.endswith("polite and right")
        run_id = judged[0].detail.split()[2].rstrip(":")
        record = await runtime.get_run(run_id)  # the judge's answer is journaled
        assert record.agent == "judge"
        assert record.status == "completed"
    first = judge_model.requests[0]
    assert "Is the answer polite?" in (first.messages[0].content or "")
    asked = first.messages[-1].content or ""
    assert "hi" in asked
    assert "Reference answer:\nhello" in asked
    assert "echo: hi" in asked
    assert report.case("a").passed
    assert not report.case("b").passed


async def test_the_same_rubric_input_and_output_are_judged_once() -> None:
    judge_model = FunctionModel(lambda request: verdict(1.0), record=True)
    judge = Judge(judge_model, "Is it right?")
    dataset = Dataset([Case(id="a", input="hi"), Case(id="b", input="ho")])
    report = await evaluate(echo(), dataset, scorers=[judge], repeats=3, concurrency=4)
    assert judge_model.calls == 2
    assert judge.runs == 2
    details = [s.detail for c in report.cases for r in c.repeats for s in r.scores]
    assert sum(d.startswith("(cached)") for d in details) == 4
    assert report.pass_rate == 1.0
    # Another rubric is another judgment.
    other = Judge(judge_model, "Is it short?")
    await evaluate(echo(), dataset, scorers=[other])
    assert judge_model.calls == 4
    await judge.aclose()
    await other.aclose()


async def test_a_judge_that_cannot_answer_fails_the_sample_and_is_asked_again() -> None:
    judge = Judge(ScriptedModel(["not json", "still not", "nope", verdict(1.0)]), "Right?")
    async with Runtime(store=MemoryStore()) as runtime:
        done = await runtime.run(echo(), "hi")
        sample = Sample(
            case=Case(id="a", input="hi"),
            result=done,
            output=done.output,
            tool_calls=[],
            runtime=runtime,
        )
        first = await judge(sample)
        assert not first.passed
        assert "the judge could not answer (run run_" in first.detail
        again = (await asyncio.gather(judge(sample)))[0]
        assert again.passed
        assert again.detail.startswith("judge run")
        assert (await judge(sample)).detail.startswith("(cached) judge run")
        assert judge.runs == 2
    await judge.aclose()


def test_a_judge_needs_a_rubric_and_a_threshold_from_0_to_1() -> None:
    with pytest.raises(ValueError, match="needs a rubric"):
        Judge("rules", " ")
    with pytest.raises(ValueError, match="threshold"):
        Judge("rules", "ok?", threshold=2)

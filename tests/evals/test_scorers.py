"""Each built-in scorer, and custom scorers sync and async, on samples of real runs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel

from keel import Agent, Runtime, tool
from keel.evals import (
    ANY,
    Case,
    Contains,
    Exact,
    ExpectedCall,
    JSONMatch,
    Regex,
    Sample,
    Score,
    State,
    ToolCalls,
)
from keel.evals._sample import score_with
from keel.testing import MemoryStore, Scripted, ScriptedModel, call
from keel.testing._calls import calls_from_events


@tool
def lookup(order_id: str) -> str:
    """Find an order."""
    return f"order {order_id}: shipped"


@tool
def refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    return "refunded"


class Answer(BaseModel):
    status: str
    order_id: str
    items: int


async def sample(
    script: list[Scripted], case: Case | None = None, output_type: Any = None, deps: Any = None
) -> Sample:
    options: dict[str, Any] = {} if output_type is None else {"output_type": output_type}
    agent = Agent(name="a", model=ScriptedModel(script), tools=[lookup, refund], **options)
    async with Runtime(store=MemoryStore()) as runtime:
        result = await runtime.run(agent, "go")
        events = await runtime.store.load(result.run_id)
    return Sample(
        case=case or Case(id="c", input="go"),
        result=result,
        output=result.output_or_none,
        tool_calls=calls_from_events(events),
        deps=deps,
    )


async def test_exact_compares_text_trimmed_and_data_as_json() -> None:
    done = await sample(["  It shipped. "], Case(id="c", input="go", reference="It shipped."))
    assert Exact()(done) == Score("exact", 1.0, True)
    wrong = Exact("It was lost.")(done)
    assert not wrong.passed
    assert wrong.value == 0.0
    assert "expected 'It was lost.', got 'It shipped.'" in wrong.detail
    assert not Exact("it SHIPPED.")(done).passed
    assert Exact("it SHIPPED.", ignore_case=True)(done).passed
    typed = await sample(['{"status": "shipped", "order_id": "1", "items": 2}'], output_type=Answer)
    assert Exact({"status": "shipped", "order_id": "1", "items": 2})(typed).passed
    assert (
        "output.items: expected 3, got 2"
        in Exact({"status": "shipped", "order_id": "1", "items": 3})(typed).detail
    )


async def test_a_scorer_needing_a_reference_says_the_case_has_none() -> None:
    done = await sample(["x"])
    score = await score_with(Exact(), done)
    assert not score.passed
    assert "case 'c' has no reference for exact" in score.detail


async def test_text_scorers_fail_a_run_that_did_not_complete() -> None:
    stopped = await sample(
        [call("lookup", order_id="1")] * 3, Case(id="c", input="go", reference="x")
    )
    assert stopped.result.status != "completed"
    for scorer in (Exact(), Contains(), Regex("x"), JSONMatch()):
        score = scorer(stopped)
        assert not score.passed
        assert "did not complete" in score.detail


async def test_contains_defaults_to_the_reference_and_scores_the_share_found() -> None:
    done = await sample(["Your order SHIPPED today"], Case(id="c", input="go", reference="shipped"))
    assert Contains()(done).passed
    assert not Contains(case_sensitive=True)(done).passed
    partial = Contains(["shipped", "tomorrow", "today", "refund"])(done)
    assert partial.value == 0.5
    assert not partial.passed
    assert "missing 'tomorrow', 'refund'" in partial.detail


async def test_regex_searches_the_output() -> None:
    done = await sample(["Tracking: JD0146"])
    assert Regex(r"JD\d+").name == "regex"
    assert Regex(r"JD\d+")(done).passed
    assert Regex(re.compile(r"^tracking", re.I))(done).passed
    failed = Regex(r"UPS\d+")(done)
    assert not failed.passed
    assert "/UPS\\d+/ not found" in failed.detail


async def test_json_match_scores_the_share_of_keys_with_matchers() -> None:
    typed = await sample(['{"status": "shipped", "order_id": "1", "items": 2}'], output_type=Answer)
    assert JSONMatch({"status": "shipped", "order_id": re.compile(r"\d"), "items": ANY})(
        typed
    ).passed
    half = JSONMatch({"status": "lost", "order_id": "1"}, partial=True)(typed)
    assert half.value == 0.5
    assert not half.passed
    assert "status: expected 'lost'" in half.detail
    extra = JSONMatch({"status": "shipped", "order_id": "1"})(typed)
    assert not extra.passed
    assert "unexpected key 'items'" in extra.detail
    assert JSONMatch({"status": "shipped"}, partial=True)(typed).passed
    text = await sample(['{"a": [1, 2]}'], Case(id="c", input="go", reference={"a": [1, 2]}))
    assert JSONMatch()(text).passed  # a string output is parsed
    assert not JSONMatch([1])(text).passed


async def test_tool_calls_exact_in_order_and_subset_with_argument_matchers() -> None:
    script: list[Scripted] = [
        call("lookup", order_id="1"),
        call("refund", order_id="1", amount=5.0),
        call("lookup", order_id="2"),
        "Done.",
    ]
    expected = [
        ExpectedCall("lookup", {"order_id": "1"}),
        ExpectedCall("refund", {"order_id": "1", "amount": ANY}),
        ExpectedCall("lookup", {"order_id": lambda v: v == "2"}),
    ]
    done = await sample(script, Case(id="c", input="go", expected_tools=expected))
    assert ToolCalls()(done) == Score("tool_calls", 1.0, True)
    assert ToolCalls("in_order", expected=["lookup", "lookup"])(done).passed
    assert ToolCalls("subset", expected=["refund", "lookup"])(done).passed

    wrong_arg = ToolCalls(
        expected=["lookup", ExpectedCall("refund", {"order_id": "9", "amount": ANY}), "lookup"]
    )(done)
    assert wrong_arg.value == pytest.approx(1 / 3)
    assert "call #2: refund: arguments.order_id: expected '9', got '1'" in wrong_arg.detail
    fewer = ToolCalls(expected=["lookup", "refund"])(done)
    assert not fewer.passed
    assert "unexpected call #3: lookup" in fewer.detail
    more = ToolCalls(expected=["lookup", "refund", "lookup", "refund"])(done)
    assert not more.passed
    assert "missing call #4: refund(...)" in more.detail
    order = ToolCalls("in_order", expected=["refund", "refund"])(done)
    assert order.value == 0.5
    assert "missing call #2 (in order)" in order.detail
    subset = ToolCalls("subset", expected=["lookup", "lookup", "lookup"])(done)
    assert subset.value == pytest.approx(2 / 3)
    assert "missing call(s): lookup(...)" in subset.detail
    assert ToolCalls(expected=[])(await sample(["no tools"])).passed
    assert not ToolCalls(expected=[])(done).passed


async def test_state_checks_the_tools_data_sync_or_async() -> None:
    desk = {"refunds": ["o-1"]}
    done = await sample(["ok"], deps=desk)

    async def refunded(s: Sample) -> bool:
        return "o-1" in s.deps["refunds"]

    assert (await State(refunded)(done)).passed
    assert not (await State(lambda s: "o-2" in s.deps["refunds"], name="o2")(done)).passed
    assert (await State(lambda s: 0.5, threshold=0.5)(done)) == Score("state", 0.5, True)
    assert (await State(lambda s: Score("mine", 0.2, False, "why"))(done)).detail == "why"


async def test_custom_scorers_sync_and_async_and_broken_ones() -> None:
    done = await sample(["It shipped."])

    def short(s: Sample) -> bool:
        return len(s.output) < 20

    async def polite(s: Sample) -> float:
        return 0.9

    polite.threshold = 0.8  # type: ignore[attr-defined]

    def broken(s: Sample) -> Score:
        raise RuntimeError("boom")

    assert await score_with(short, done) == Score("short", 1.0, True)
    assert await score_with(polite, done) == Score("polite", 0.9, True)
    assert await score_with(lambda s: 0.9, done) == Score("function", 0.9, False)
    failed = await score_with(broken, done)
    assert not failed.passed
    assert failed.detail == "scorer raised RuntimeError: boom"
    wrong_type = await score_with(lambda s: "yes", done)  # type: ignore[arg-type, return-value]
    assert "returned str; return a Score" in wrong_type.detail


def test_a_score_is_a_number_from_0_to_1() -> None:
    with pytest.raises(ValueError, match="from 0 to 1"):
        Score("x", 1.5, True)
    with pytest.raises(TypeError, match="must be a number"):
        Score("x", True, True)

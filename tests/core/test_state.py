"""The run-state fold: properties over arbitrary journals, and the message history it builds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel._core.codec import decode_event, encode_event
from keel._core.events import (
    Event,
    HandedOff,
    ModelResponded,
    ModelSwitched,
    OutputRejected,
    RunStarted,
    ToolCallFinished,
)
from keel._core.fold import apply, fold, start
from keel._core.limits import Limits
from keel._core.messages import SystemMessage, UserMessage
from keel._core.usage import Usage
from tests.core.strategies import journals

PROPERTY = settings(max_examples=150, deadline=None)


@PROPERTY
@given(journals, st.data())
def test_folding_in_two_parts_equals_folding_at_once(
    events: list[Event], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(min_value=1, max_value=len(events)))
    state = fold(events[:cut])
    for event in events[cut:]:
        apply(state, event)
    assert state == fold(events)


@PROPERTY
@given(journals)
def test_state_survives_a_trip_through_json(events: list[Event]) -> None:
    stored = [decode_event(encode_event(event)) for event in events]
    assert fold(stored) == fold(events)


@PROPERTY
@given(journals)
def test_counters_are_sums_over_the_journal(events: list[Event]) -> None:
    state = fold(events)
    responses = [e for e in events if isinstance(e, ModelResponded)]
    results = [e for e in events if isinstance(e, ToolCallFinished)]
    rejections = [e for e in events if isinstance(e, OutputRejected)]
    switches = [e for e in events if isinstance(e, ModelSwitched)]
    corrections = rejections + [e for e in switches if e.correction is not None]
    children = [c for e in results for c in e.children]  # delegated calls add theirs
    expected_usage = sum((e.usage for e in responses), sum((c.usage for c in children), Usage()))
    # Each switch to another model (or agent) starts its count of rejected answers afresh.
    last_switch = max(
        (i for i, e in enumerate(events) if isinstance(e, ModelSwitched | HandedOff)), default=-1
    )
    since_switch = [e for e in events[last_switch + 1 :] if isinstance(e, OutputRejected)]

    assert state.usage == expected_usage
    assert state.tool_calls == len(results)
    assert state.output_retries == len(since_switch)
    assert state.event_count == len(events)
    assert len(state.own_messages) == 1 + len(responses) + len(results) + len(corrections)


@PROPERTY
@given(journals)
def test_cost_is_unknown_once_any_call_has_no_price(events: list[Event]) -> None:
    state = fold(events)
    prices = [e.cost_usd for e in events if isinstance(e, ModelResponded)]
    prices += [c.cost_usd for e in events if isinstance(e, ToolCallFinished) for c in e.children]
    if any(price is None for price in prices):
        assert state.cost_usd is None
    else:
        assert state.cost_usd == pytest.approx(sum(p for p in prices if p is not None))


def started(history_count: int = 0, instructions: str = "Be brief.") -> RunStarted:
    return RunStarted(
        run_id="r",
        thread_id="t",
        agent="a",
        model="m",
        input="and now?",
        instructions=instructions,
        history_count=history_count,
        limits=Limits(),
    )


def test_messages_are_instructions_then_history_then_input() -> None:
    history = [UserMessage(content="hi"), UserMessage(content="again"), UserMessage(content="x")]

    # The loader selects the run's history (here: the first two, a journal without history_seq).
    state = start(started(history_count=2), history[:2])

    assert state.messages == [
        SystemMessage(content="Be brief."),
        UserMessage(content="hi"),
        UserMessage(content="again"),
        UserMessage(content="and now?"),
    ]
    assert state.own_messages == [UserMessage(content="and now?")]


def test_no_system_message_without_instructions() -> None:
    assert start(started(instructions="")).messages == [UserMessage(content="and now?")]


def test_a_journal_must_begin_with_run_started() -> None:
    with pytest.raises(ValueError, match="must begin with a RunStarted"):
        fold([OutputRejected(step=1, error="x")])


def test_a_second_run_started_is_refused() -> None:
    with pytest.raises(ValueError, match="second RunStarted"):
        fold([started(), started()])


def test_tool_results_keep_the_order_of_the_calls_whichever_ends_first() -> None:
    from keel._core.events import ModelResponded, ToolCallFinished
    from keel._core.usage import Usage
    from keel.messages import AssistantMessage, ToolCall, ToolResultMessage

    state = start(started())
    calls = tuple(ToolCall(id=f"c{i}", name="lookup", arguments="{}") for i in range(3))
    apply(
        state,
        ModelResponded(
            step=1, model="m", message=AssistantMessage(tool_calls=calls), usage=Usage()
        ),
    )
    for i in (1, 2, 0):  # c1 was refused first, c2 and c0 ended later
        apply(state, ToolCallFinished(step=1, call=calls[i], result=f"r{i}"))

    results = [m for m in state.messages if isinstance(m, ToolResultMessage)]
    assert [r.tool_call_id for r in results] == ["c0", "c1", "c2"]

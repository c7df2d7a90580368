"""Delegation in the journal: child run ids are derived, not drawn; a call's children are
rolled up into the run's totals once, with the call's result; a call waiting for a child
pauses the run; journals written before these fields existed still load."""

from __future__ import annotations

import json

from keel._core.codec import decode_event, encode_event
from keel._core.delegation import CHILD_WAITING, ChildRun, ToolCallWaiting, child_run_id
from keel._core.events import (
    ErrorInfo,
    ModelResponded,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from keel._core.fold import fold
from keel._core.limits import Limits
from keel._core.messages import AssistantMessage, ToolCall
from keel._core.usage import Usage

PARENT = "run_0193a0b1c2d3" + "ab" * 8
CALL = ToolCall(id="call_1", name="researcher", arguments='{"input": "x"}')


def test_a_child_id_is_derived_from_the_parent_and_the_call() -> None:
    one = child_run_id(PARENT, "call_1")

    assert one == child_run_id(PARENT, "call_1")
    assert len({one, child_run_id(PARENT, "call_2"), child_run_id("run_other", "call_1")}) == 3
    fanned = [child_run_id(PARENT, "call_1", i) for i in range(3)]
    assert len({one, *fanned}) == 4
    # Like any run id, and beside its parent when sorted by id.
    assert one.startswith("run_0193a0b1c2d3")
    assert len(one) == len(PARENT)
    assert child_run_id("not-a-run-id", "c").startswith("run_")


def _journal(*later: object) -> list[object]:
    started = RunStarted(run_id=PARENT, thread_id="t", agent="boss", model="m", input="go")
    turn = ModelResponded(
        step=1,
        model="m",
        message=AssistantMessage(tool_calls=(CALL,)),
        usage=Usage(requests=1, input_tokens=10),
        cost_usd=0.5,
    )
    begun = ToolCallStarted(step=1, call=CALL, idempotency_key=f"{PARENT}:1:0")
    return [started, turn, begun, *later]


def _child(cost: float | None = 0.25, status: str = "completed") -> ChildRun:
    usage = Usage(requests=2, input_tokens=100, output_tokens=7)
    return ChildRun(run_id="run_c", agent="r", status=status, usage=usage, cost_usd=cost)  # type: ignore[arg-type]


def test_the_children_of_a_finished_call_are_added_to_the_run_totals() -> None:
    finished = ToolCallFinished(step=1, call=CALL, result="ok", children=(_child(), _child()))

    state = fold(_journal(finished))  # type: ignore[arg-type]

    assert state.cost_usd == 0.5 + 0.25 + 0.25
    assert state.usage == Usage(requests=5, input_tokens=210, output_tokens=14)


def test_a_child_of_unknown_cost_makes_the_run_cost_unknown() -> None:
    finished = ToolCallFinished(step=1, call=CALL, result="ok", children=(_child(cost=None),))

    assert fold(_journal(finished)).cost_usd is None  # type: ignore[arg-type]


def test_a_call_waiting_for_a_child_pauses_the_run_and_counts_nothing_yet() -> None:
    reason = ErrorInfo(code=CHILD_WAITING, message="child run run_c waits")
    waiting = ToolCallWaiting(
        step=1, call=CALL, child=_child(status="awaiting_approval"), reason=reason
    )

    state = fold(_journal(waiting))  # type: ignore[arg-type]

    assert (state.status, state.reason) == ("paused", reason)
    assert state.cost_usd == 0.5
    assert "call_1" in state.started  # no result: resuming runs the call again
    resumed = fold(_journal(waiting, RunResumed(limits=Limits())))  # type: ignore[arg-type]
    assert (resumed.status, resumed.reason) == ("running", None)


def test_journals_from_before_delegation_still_load() -> None:
    started = json.loads(
        encode_event(RunStarted(run_id="r", thread_id="t", agent="a", model="m", input="i"))
    )
    finished = json.loads(encode_event(ToolCallFinished(step=1, call=CALL, result="ok")))
    for data, field in ((started, "parent_run_id"), (finished, "children")):
        del data[field]
    started.pop("parent_step")
    started.pop("parent_call_id")

    old_start = decode_event(json.dumps(started))
    old_finish = decode_event(json.dumps(finished))

    assert isinstance(old_start, RunStarted)
    assert old_start.parent_run_id is None
    assert isinstance(old_finish, ToolCallFinished)
    assert old_finish.children == ()


def test_a_wait_and_a_result_with_children_round_trip() -> None:
    waiting = ToolCallWaiting(
        step=1, call=CALL, child=_child(), reason=ErrorInfo(code=CHILD_WAITING, message="m")
    )
    finished = ToolCallFinished(step=1, call=CALL, result="ok", children=(_child(),))

    assert decode_event(encode_event(waiting)) == waiting
    assert decode_event(encode_event(finished)) == finished

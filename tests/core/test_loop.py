"""The pure loop: which events and effect ``decide`` returns for each state. No I/O, no asyncio."""

from __future__ import annotations

from pydantic import BaseModel

from keel._core.events import (
    ApprovalRequested,
    CallDecided,
    ErrorInfo,
    ModelResponded,
    ModelSwitched,
    OutputRejected,
    PendingCall,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
)
from keel._core.fold import apply, start
from keel._core.limits import Limits
from keel._core.loop import (
    CallModel,
    Decision,
    HandOff,
    LoopSpec,
    RunTools,
    decide,
    idempotency_key,
)
from keel._core.messages import AssistantMessage, ToolCall
from keel._core.output import OutputSpec
from keel._core.state import RunState
from keel._core.toolspec import spec_from_function
from keel._core.usage import Usage

NOW = 1_000.0


def lookup_order(order_id: str) -> str:
    """Find an order."""
    return order_id


def refund(order_id: str, amount_usd: float) -> str:
    """Refund an order."""
    return order_id


LOOKUP = spec_from_function(lookup_order, idempotent=True, side_effects="read")
REFUND = spec_from_function(refund)
SPEC = LoopSpec(tools={"lookup_order": LOOKUP, "refund": REFUND})


def new_state(limits: Limits | None = None) -> RunState:
    return start(
        RunStarted(
            run_id="run_1",
            thread_id="t",
            agent="support",
            model="scripted",
            input="Where is order 123?",
            limits=limits or Limits(),
            at=NOW,
        )
    )


def turn(state: RunState, *calls: ToolCall, text: str | None = None, tokens: int = 0) -> None:
    apply(
        state,
        ModelResponded(
            step=state.step + 1,
            model="scripted",
            message=AssistantMessage(content=text, tool_calls=calls),
            usage=Usage(requests=1, input_tokens=tokens),
            at=NOW,
        ),
    )


def lookup(call_id: str = "c1", arguments: str = '{"order_id": "123"}') -> ToolCall:
    return ToolCall(id=call_id, name="lookup_order", arguments=arguments)


def test_a_fresh_run_calls_the_model_for_step_one() -> None:
    decision = decide(new_state(), SPEC, NOW)
    assert decision.events == ()
    assert decision.effect == CallModel(step=1)


def test_valid_calls_are_started_with_stable_keys_before_they_run() -> None:
    state = new_state()
    turn(state, lookup("a"), lookup("b", '{"order_id": "9"}'))

    decision = decide(state, SPEC, NOW)

    assert [type(e) for e in decision.events] == [ToolCallStarted, ToolCallStarted]
    assert [e.idempotency_key for e in decision.events if isinstance(e, ToolCallStarted)] == [
        "run_1:1:0",
        "run_1:1:1",
    ]
    assert isinstance(decision.effect, RunTools)
    assert [c.arguments for c in decision.effect.calls] == [{"order_id": "123"}, {"order_id": "9"}]


def test_unknown_tools_get_an_error_result_naming_the_real_tools() -> None:
    state = new_state()
    turn(state, ToolCall(id="x", name="delete_everything", arguments="{}"))

    decision = decide(state, SPEC, NOW)

    [finished] = decision.events
    assert isinstance(finished, ToolCallFinished)
    assert finished.error is not None
    assert finished.error.code == "tool_unknown"
    assert "available tools: lookup_order, refund" in finished.result
    assert decision.effect is None


def test_invalid_arguments_never_reach_the_tool() -> None:
    state = new_state()
    turn(state, lookup("bad", '{"order_id": '), lookup("ok"))

    decision = decide(state, SPEC, NOW)

    rejected = [e for e in decision.events if isinstance(e, ToolCallFinished)]
    assert [e.call.id for e in rejected] == ["bad"]
    assert rejected[0].error is not None
    assert rejected[0].error.code == "tool_arguments_invalid"
    assert isinstance(decision.effect, RunTools)
    assert [c.call.id for c in decision.effect.calls] == ["ok"]


def test_calls_past_the_per_turn_limit_are_refused_and_keep_their_position_keys() -> None:
    state = new_state(Limits(max_tool_calls_per_turn=2))
    turn(state, *(lookup(f"c{i}") for i in range(3)))

    decision = decide(state, SPEC, NOW)

    refused = [e for e in decision.events if isinstance(e, ToolCallFinished)]
    assert [e.call.id for e in refused] == ["c2"]
    assert "only 2 tool calls run per turn" in refused[0].result
    assert isinstance(decision.effect, RunTools)
    assert [c.idempotency_key for c in decision.effect.calls] == ["run_1:1:0", "run_1:1:1"]


def test_the_run_pauses_before_exceeding_its_tool_call_budget() -> None:
    state = new_state(Limits(max_tool_calls=1))
    turn(state, lookup("a"), lookup("b"))

    decision = decide(state, SPEC, NOW)

    [paused] = decision.events
    assert isinstance(paused, RunPaused)
    assert paused.reason.code == "limit.max_tool_calls"
    assert "(2 of 1)" in paused.reason.message
    assert decision.effect is None


def test_raising_the_tool_call_limit_and_resuming_runs_the_waiting_calls() -> None:
    state = new_state(Limits(max_tool_calls=1))
    turn(state, lookup("a"), lookup("b"))
    for event in decide(state, SPEC, NOW).events:
        apply(state, event)

    apply(state, RunResumed(limits=Limits(max_tool_calls=10), at=NOW))
    decision = decide(state, SPEC, NOW)

    assert isinstance(decision.effect, RunTools)
    assert len(decision.effect.calls) == 2


def test_interrupted_idempotent_call_runs_again_with_the_same_key() -> None:
    state = new_state()
    turn(state, lookup("a"))
    key = idempotency_key("run_1", 1, 0)
    apply(state, ToolCallStarted(step=1, call=lookup("a"), idempotency_key=key, at=NOW))

    decision = decide(state, SPEC, NOW)

    assert decision.events == ()  # already journaled as started
    assert isinstance(decision.effect, RunTools)
    assert decision.effect.calls[0].idempotency_key == key


def test_interrupted_call_that_is_not_safe_to_repeat_waits_for_a_person() -> None:
    state = new_state()
    call = ToolCall(id="r", name="refund", arguments='{"order_id": "1", "amount_usd": 5}')
    turn(state, call)
    apply(state, ToolCallStarted(step=1, call=call, idempotency_key="run_1:1:0", at=NOW))

    decision = decide(state, SPEC, NOW)

    [requested] = decision.events
    assert isinstance(requested, ApprovalRequested)
    assert requested.calls == (
        PendingCall(call=call, kind="interrupted", idempotency_key="run_1:1:0"),
    )
    assert decision.effect is None
    apply(state, requested)
    assert state.status == "awaiting_approval"
    assert decide(state, SPEC, NOW).effect is None


BIG_REFUNDS = LoopSpec(
    tools={"refund": spec_from_function(refund, requires_approval=lambda a: a["amount_usd"] > 100)}
)
SMALL = ToolCall(id="s", name="refund", arguments='{"order_id": "1", "amount_usd": 20}')
BIG = ToolCall(id="b", name="refund", arguments='{"order_id": "2", "amount_usd": 500}')


def waiting_for_approval() -> RunState:
    state = new_state()
    turn(state, SMALL, BIG)
    for event in decide(state, BIG_REFUNDS, NOW).events:
        apply(state, event)
    return state


def decided(state: RunState, decision: CallDecided) -> Decision:
    apply(state, decision)
    apply(state, RunResumed(limits=state.limits, at=NOW))
    return decide(state, BIG_REFUNDS, NOW)


def test_a_call_that_needs_approval_stops_the_turn_before_anything_starts() -> None:
    state = new_state()
    turn(state, SMALL, BIG)

    decision = decide(state, BIG_REFUNDS, NOW)

    # Not even the small refund starts: it would look interrupted when the run resumes.
    [requested] = decision.events
    assert isinstance(requested, ApprovalRequested)
    assert [(p.call.id, p.kind) for p in requested.calls] == [("b", "approval")]
    assert decision.effect is None


def test_an_approved_call_runs_with_the_rest_of_its_turn() -> None:
    state = waiting_for_approval()

    decision = decided(state, CallDecided(call_id="b", decision="approve", by="ana", at=NOW))

    assert isinstance(decision.effect, RunTools)
    assert [c.call.id for c in decision.effect.calls] == ["s", "b"]
    assert [type(e) for e in decision.events] == [ToolCallStarted, ToolCallStarted]


def test_a_rejected_call_tells_the_model_who_rejected_it_and_why() -> None:
    state = waiting_for_approval()

    decision = decided(
        state, CallDecided(call_id="b", decision="reject", by="ana", reason="over policy", at=NOW)
    )

    rejected = next(e for e in decision.events if isinstance(e, ToolCallFinished))
    assert rejected.call.id == "b"
    assert rejected.error is not None
    assert rejected.error.code == "call_rejected"
    assert rejected.result == "Error: a person (ana) rejected this call: over policy"
    assert isinstance(decision.effect, RunTools)
    assert [c.call.id for c in decision.effect.calls] == ["s"]


def test_an_edited_call_runs_with_the_new_arguments_and_the_history_shows_them() -> None:
    state = waiting_for_approval()
    edited = '{"order_id": "2", "amount_usd": 90}'

    decision = decided(
        state, CallDecided(call_id="b", decision="edit", by="ana", arguments=edited, at=NOW)
    )

    assert isinstance(decision.effect, RunTools)
    big = next(c for c in decision.effect.calls if c.call.id == "b")
    assert big.arguments == {"order_id": "2", "amount_usd": 90.0}
    model_turn = state.messages[state.turn_index]
    assert isinstance(model_turn, AssistantMessage)
    assert [c.arguments for c in model_turn.tool_calls] == [SMALL.arguments, edited]


def interrupted_refund() -> RunState:
    state = new_state()
    call = ToolCall(id="r", name="refund", arguments='{"order_id": "1", "amount_usd": 5}')
    turn(state, call)
    apply(state, ToolCallStarted(step=1, call=call, idempotency_key="run_1:1:0", at=NOW))
    for event in decide(state, SPEC, NOW).events:
        apply(state, event)
    return state


def test_a_confirmed_interrupted_call_gets_the_result_the_person_gives() -> None:
    state = interrupted_refund()

    apply(state, CallDecided(call_id="r", decision="done", by="ops", result="refund rf_9", at=NOW))
    apply(state, RunResumed(limits=state.limits, at=NOW))
    decision = decide(state, SPEC, NOW)

    [finished] = decision.events
    assert isinstance(finished, ToolCallFinished)
    assert (finished.result, finished.error) == ("refund rf_9", None)


def test_an_approved_interrupted_call_runs_again_as_a_new_attempt_with_its_key() -> None:
    state = interrupted_refund()

    apply(state, CallDecided(call_id="r", decision="approve", by="ops", at=NOW))
    apply(state, RunResumed(limits=state.limits, at=NOW))
    decision = decide(state, SPEC, NOW)

    # A decision covers one attempt: the new attempt is journaled as started before it runs.
    [restarted] = decision.events
    assert isinstance(restarted, ToolCallStarted)
    assert (restarted.attempt, restarted.idempotency_key) == (2, "run_1:1:0")
    assert isinstance(decision.effect, RunTools)
    assert decision.effect.calls[0].idempotency_key == "run_1:1:0"
    assert decision.effect.calls[0].attempt == 2


def test_an_approved_attempt_that_is_interrupted_again_goes_back_to_a_person() -> None:
    state = interrupted_refund()
    apply(state, CallDecided(call_id="r", decision="approve", by="ops", at=NOW))
    apply(state, RunResumed(limits=state.limits, at=NOW))
    for event in decide(state, SPEC, NOW).events:
        apply(state, event)  # attempt 2 started... and the process dies before its result

    apply(state, RunResumed(limits=state.limits, at=NOW))
    decision = decide(state, SPEC, NOW)

    [requested] = decision.events
    assert isinstance(requested, ApprovalRequested)
    assert [(p.call.id, p.kind) for p in requested.calls] == [("r", "interrupted")]
    assert decision.effect is None


def test_a_call_that_timed_out_in_doubt_waits_for_a_person_with_the_reason() -> None:
    state = new_state()
    call = ToolCall(id="r", name="refund", arguments='{"order_id": "1", "amount_usd": 5}')
    turn(state, call)
    apply(state, ToolCallStarted(step=1, call=call, idempotency_key="run_1:1:0", at=NOW))
    apply(
        state,
        ToolCallInDoubt(
            step=1,
            call=call,
            reason=ErrorInfo(code="tool_timeout", message="did not finish within 5s"),
            at=NOW,
        ),
    )
    decision = decide(state, SPEC, NOW)

    [requested] = decision.events
    assert isinstance(requested, ApprovalRequested)
    [pending] = requested.calls
    assert (pending.kind, pending.reason) == ("interrupted", "did not finish within 5s")


def test_the_same_call_asked_for_too_often_pauses_the_run() -> None:
    state = new_state(Limits(max_repeated_calls=2))
    for step in range(1, 4):
        turn(state, lookup(f"c{step}", '{"order_id": "123"}'))
        decision = decide(state, SPEC, NOW)
        if step < 3:
            assert isinstance(decision.effect, RunTools)
            finished = ToolCallFinished(step=step, call=lookup(f"c{step}"), result="ok", at=NOW)
            apply(state, finished)

    [paused] = decision.events
    assert isinstance(paused, RunPaused)
    assert paused.reason.code == "limit.max_repeated_calls"
    assert 'lookup_order({"order_id": "123"}) was asked for 3 times' in paused.reason.message


def test_differently_spelled_equal_arguments_count_as_the_same_call() -> None:
    state = new_state(Limits(max_repeated_calls=1))
    turn(state, lookup("a", '{"order_id": "1"}'))
    apply(state, ToolCallFinished(step=1, call=lookup("a"), result="ok", at=NOW))
    turn(state, lookup("b", '{ "order_id" : "1" }'))

    [paused] = decide(state, SPEC, NOW).events

    assert isinstance(paused, RunPaused)
    assert paused.reason.code == "limit.max_repeated_calls"


def test_turns_where_every_call_fails_pause_the_run() -> None:
    state = new_state(Limits(max_turns_without_progress=2))
    for step in (1, 2):
        turn(state, ToolCall(id=f"x{step}", name="nope", arguments="{}"))
        for event in decide(state, SPEC, NOW).events:
            apply(state, event)

    [paused] = decide(state, SPEC, NOW).events

    assert isinstance(paused, RunPaused)
    assert paused.reason.code == "limit.max_turns_without_progress"
    assert "every tool call of those turns failed" in paused.reason.message


def test_one_successful_call_resets_the_count_of_turns_without_progress() -> None:
    state = new_state(Limits(max_turns_without_progress=2))
    turn(state, ToolCall(id="x1", name="nope", arguments="{}"))
    for event in decide(state, SPEC, NOW).events:
        apply(state, event)
    turn(state, lookup("ok"))
    apply(state, ToolCallFinished(step=2, call=lookup("ok"), result="found", at=NOW))

    assert state.turns_without_progress == 0
    assert decide(state, SPEC, NOW).effect == CallModel(step=3)


def test_a_final_answer_completes_the_run() -> None:
    state = new_state()
    turn(state, text="It ships today.")

    [finished] = decide(state, SPEC, NOW).events

    assert finished == RunFinished(status="completed", output="It ships today.", at=NOW)


class Answer(BaseModel):
    status: str


OUTPUT_SPEC = LoopSpec(output=OutputSpec(Answer))


def test_structured_answer_is_validated() -> None:
    state = new_state()
    turn(state, text='{"status": "shipped"}')

    [finished] = decide(state, OUTPUT_SPEC, NOW).events

    assert isinstance(finished, RunFinished)
    assert finished.output == {"status": "shipped"}


def test_invalid_structured_answer_is_sent_back_then_pauses_after_the_retry_limit() -> None:
    state = new_state(Limits(max_output_retries=1))
    turn(state, text="shipped")

    [rejected] = decide(state, OUTPUT_SPEC, NOW).events
    assert isinstance(rejected, OutputRejected)
    apply(state, rejected)
    assert decide(state, OUTPUT_SPEC, NOW).effect == CallModel(step=2)
    assert "did not match the required output schema" in str(state.messages[-1])

    turn(state, text='{"state": "shipped"}')
    [paused] = decide(state, OUTPUT_SPEC, NOW).events

    assert isinstance(paused, RunPaused)
    assert paused.reason.code == "output_invalid"
    assert "after 2 attempts" in paused.reason.message
    assert "status: Field required" in paused.reason.message
    assert "raise Limits(max_output_retries=...) and resume" in paused.reason.message


def test_a_model_that_keeps_failing_validation_hands_over_to_the_next_one() -> None:
    spec = LoopSpec(output=OutputSpec(Answer), models=2)
    state = new_state(Limits(max_output_retries=0))
    turn(state, text="shipped")

    [switched] = decide(state, spec, NOW).events

    assert isinstance(switched, ModelSwitched)
    assert (switched.model_index, switched.reason.code) == (1, "output_invalid")
    apply(state, switched)
    # The next model answers afresh, told what was wrong with the last answer.
    assert decide(state, spec, NOW).effect == CallModel(step=2)
    assert "did not match the required output schema" in str(state.messages[-1])


def test_turns_without_progress_hand_over_to_the_next_model_before_pausing() -> None:
    spec = LoopSpec(tools={"lookup_order": LOOKUP}, models=2)
    state = new_state(Limits(max_turns_without_progress=1))
    turn(state, ToolCall(id="x", name="nope", arguments="{}"))
    for event in decide(state, spec, NOW).events:
        apply(state, event)

    [switched] = decide(state, spec, NOW).events

    assert isinstance(switched, ModelSwitched)
    assert switched.reason.code == "limit.max_turns_without_progress"
    apply(state, switched)
    assert decide(state, spec, NOW).effect == CallModel(step=2)


def test_the_step_limit_pauses_before_another_model_call() -> None:
    state = new_state(Limits(max_steps=1))
    turn(state, lookup())
    apply(state, ToolCallFinished(step=1, call=lookup(), result="ok", at=NOW))

    [paused] = decide(state, SPEC, NOW).events

    assert isinstance(paused, RunPaused)
    assert paused.reason.code == "limit.max_steps"
    assert "raise Limits(max_steps=...) and resume" in paused.reason.message


def test_the_token_limit_pauses_before_another_model_call() -> None:
    state = new_state(Limits(max_total_tokens=100))
    turn(state, lookup(), tokens=150)
    apply(state, ToolCallFinished(step=1, call=lookup(), result="ok", at=NOW))

    [paused] = decide(state, SPEC, NOW).events

    assert isinstance(paused, RunPaused)
    assert paused.reason.code == "limit.max_total_tokens"


def test_wall_time_counts_from_the_latest_start_or_resume() -> None:
    state = new_state(Limits(max_wall_time_s=10))

    assert decide(state, SPEC, NOW + 9.9).effect == CallModel(step=1)
    [paused] = decide(state, SPEC, NOW + 10).events
    assert isinstance(paused, RunPaused)
    assert paused.reason.code == "limit.max_wall_time_s"

    apply(state, paused)
    apply(state, RunResumed(limits=state.limits, at=NOW + 100))
    assert decide(state, SPEC, NOW + 105).effect == CallModel(step=1)


def test_a_stopped_run_decides_nothing() -> None:
    state = new_state()
    apply(state, RunFinished(status="completed", output="done", at=NOW))
    decision = decide(state, SPEC, NOW)
    assert (decision.events, decision.effect) == ((), None)


def test_sequential_calls_start_one_at_a_time_in_the_models_order() -> None:
    spec = LoopSpec(tools=SPEC.tools, sequential=True)
    state = new_state()
    turn(state, lookup("a"), lookup("b", '{"order_id": "9"}'))

    decision = decide(state, spec, NOW)

    [started] = decision.events
    assert isinstance(started, ToolCallStarted)
    assert (started.call.id, started.idempotency_key) == ("a", "run_1:1:0")
    assert isinstance(decision.effect, RunTools)
    assert [c.call.id for c in decision.effect.calls] == ["a"]
    for event in decision.events:
        apply(state, event)
    apply(state, ToolCallFinished(step=1, call=lookup("a"), result="ok", at=NOW))

    after = decide(state, spec, NOW)

    [second] = after.events
    assert isinstance(second, ToolCallStarted)
    assert (second.call.id, second.idempotency_key) == ("b", "run_1:1:1")


def test_a_handoff_waits_for_the_turns_other_calls_then_is_an_effect() -> None:
    spec = LoopSpec(tools=SPEC.tools, handoffs={"transfer_to_billing": "billing"})
    state = new_state()
    transfer = ToolCall(id="h", name="transfer_to_billing", arguments="{}")
    turn(state, transfer, lookup("a"))

    first = decide(state, spec, NOW)

    assert isinstance(first.effect, RunTools)
    assert [c.call.id for c in first.effect.calls] == ["a"]
    for event in first.events:
        apply(state, event)
    apply(state, ToolCallFinished(step=1, call=lookup("a"), result="ok", at=NOW))

    second = decide(state, spec, NOW)

    assert second.events == ()
    assert second.effect == HandOff(step=1, call=transfer, agent="billing")


def test_a_handoff_tool_the_agent_does_not_have_is_an_unknown_tool() -> None:
    state = new_state()
    turn(state, ToolCall(id="h", name="transfer_to_billing", arguments="{}"))

    decision = decide(state, SPEC, NOW)

    [finished] = decision.events
    assert isinstance(finished, ToolCallFinished)
    assert finished.error is not None
    assert finished.error.code == "tool_unknown"

"""The ``runs show`` timeline, checked line by line against a snapshot."""

from __future__ import annotations

from keel._cli.timeline import format_cost, render_summary, render_timeline
from keel._core.events import (
    ErrorInfo,
    Event,
    HandedOff,
    ModelFailed,
    ModelResponded,
    OutputRejected,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from keel._core.limits import Limits
from keel._core.messages import AssistantMessage, ToolCall
from keel._core.usage import Usage
from keel.ports import RunRecord

T0 = 1_700_000_000.0
CALL = ToolCall(id="c1", name="lookup_order", arguments='{"order_id": "1042"}')


def test_every_kind_of_event_reads_clearly() -> None:
    events: list[Event] = [
        RunStarted(
            run_id="run_1",
            thread_id="customer-42",
            agent="support",
            model="openai:gpt-4o-mini",
            input="Where is order 1042?",
            tools=("lookup_order",),
            history_count=4,
            at=T0,
        ),
        ModelResponded(
            step=1,
            model="openai:gpt-4o-mini",
            message=AssistantMessage(content="Let me check.", tool_calls=(CALL,)),
            usage=Usage(requests=1, input_tokens=1200, output_tokens=25, cached_input_tokens=1000),
            cost_usd=0.000123,
            latency_ms=812.4,
            at=T0 + 0.8125,
        ),
        ToolCallStarted(step=1, call=CALL, idempotency_key="run_1:1:0", at=T0 + 0.813),
        ToolCallFinished(
            step=1, call=CALL, result='{"status": "shipped"}', latency_ms=3.2, at=T0 + 0.816
        ),
        ModelFailed(
            step=2,
            model="openai:gpt-4o-mini",
            error=ErrorInfo(code="model_rate_limited", message="slow down"),
            status=429,
            latency_ms=40.0,
            at=T0 + 1.0,
        ),
        RunPaused(reason=ErrorInfo(code="limit.max_steps", message="raise it"), at=T0 + 1.1),
        RunResumed(limits=Limits(max_steps=50), at=T0 + 60),
        OutputRejected(step=2, error="status: Field required", at=T0 + 61),
        RunFinished(status="completed", output={"status": "shipped"}, at=T0 + 62),
    ]

    assert render_timeline(events) == [
        "     +0.000s  run started    agent support, model openai:gpt-4o-mini, thread customer-42, "
        "1 tool, 4 earlier messages",
        "                input: Where is order 1042?",
        "     +0.812s  model  step 1  openai:gpt-4o-mini  812.4 ms  "
        "1,200 in / 25 out / 1,000 cached tokens  $0.000123",
        "                says: Let me check.",
        '                asks: lookup_order({"order_id": "1042"})',
        "     +0.813s  tool   lookup_order started  (key run_1:1:0)",
        "     +0.816s  tool   lookup_order done  3.2 ms",
        '                args: {"order_id": "1042"}',
        '                result: {"status": "shipped"}',
        "     +1.000s  model  step 2  openai:gpt-4o-mini  FAILED HTTP 429 after 40.0 ms "
        "[model_rate_limited]",
        "                slow down",
        "     +1.100s  run paused     [limit.max_steps]",
        "                raise it",
        "    +60.000s  run resumed    max_steps 50, max_tool_calls 100",
        "    +61.000s  output rejected  (sent back to the model)",
        "                status: Field required",
        "    +62.000s  run completed",
        '                output: {"status": "shipped"}',
    ]


def test_failed_tool_calls_show_their_error_code() -> None:
    failed = ToolCallFinished(
        step=1,
        call=CALL,
        result="Error: no order",
        error=ErrorInfo(code="tool_error", message="no order"),
        latency_ms=1.0,
        at=T0,
    )
    assert render_timeline([failed])[0].endswith("tool   lookup_order FAILED [tool_error]  1.0 ms")


def test_long_values_are_clipped_and_wrapped() -> None:
    finished = ToolCallFinished(step=1, call=CALL, result="word " * 200, at=T0)
    lines = render_timeline([finished])
    start = next(i for i, line in enumerate(lines) if "result:" in line)
    result_lines = lines[start:]
    assert all(len(line) <= 100 for line in result_lines)
    assert result_lines[-1].endswith("...")


def test_the_summary_says_cost_is_unknown_rather_than_zero() -> None:
    record = RunRecord(
        run_id="run_1",
        thread_id="t",
        agent="support",
        model="acme:x",
        status="paused",
        created_at=T0,
        updated_at=T0 + 2.5,
        steps=1,
        tool_calls=0,
        cost_usd=None,
        reason="raise it",
        reason_code="limit.max_steps",
    )

    lines = render_summary(record)

    assert "usage    1 step, 0 tool calls, 0 in / 0 out tokens, cost unknown" in lines
    assert "reason   raise it [limit.max_steps]" in lines
    assert "started  2023-11-14 22:13:20 UTC  (2.500s)" in lines
    assert format_cost(0.0) == "$0.000000"


def test_people_decisions_and_forks_are_shown() -> None:
    from keel._core.events import ApprovalRequested, CallDecided, PendingCall

    events: list[Event] = [
        RunStarted(
            run_id="run_2",
            thread_id="t",
            agent="support",
            model="rules",
            input="Refund order 1042",
            forked_from="run_1",
            fork_step=2,
            at=T0,
        ),
        ApprovalRequested(
            step=1,
            calls=(PendingCall(call=CALL, kind="approval", idempotency_key="run_2:1:0"),),
            at=T0 + 1,
        ),
        CallDecided(call_id="c1", decision="reject", by="ana", reason="too big", at=T0 + 2),
    ]

    assert render_timeline(events)[1:] == [
        "                forked from run_1 after step 2",
        "                input: Refund order 1042",
        "     +1.000s  waiting for a person",
        '                call c1 needs approval: lookup_order({"order_id": "1042"})',
        "     +2.000s  decided        reject call c1 by ana",
        "                too big",
    ]


def test_retries_fallbacks_cache_and_routes_are_shown() -> None:
    from keel._core.events import ModelSwitched
    from keel._core.messages import Attempt

    events: list[Event] = [
        ModelResponded(
            step=1,
            model="anthropic:claude-x",
            message=AssistantMessage(content="Hi."),
            usage=Usage(requests=1, input_tokens=10, output_tokens=2),
            cost_usd=0.0001,
            latency_ms=900.0,
            attempts=(
                Attempt(model="openai:gpt-4o", code="model_rate_limited", latency_ms=20),
                Attempt(model="openai:gpt-4o", code="model_server_error", waited_ms=500),
                Attempt(model="anthropic:claude-x", skipped=True, code="circuit_open"),
                Attempt(model="anthropic:claude-x"),
            ),
            route="long",
            at=T0,
        ),
        ModelResponded(
            step=2,
            model="openai:gpt-4o-mini",
            message=AssistantMessage(content="Again."),
            usage=Usage(),
            cost_usd=0.0,
            cached=True,
            at=T0 + 1,
        ),
        ModelSwitched(
            step=2, model_index=1, reason=ErrorInfo(code="output_invalid", message="bad"), at=T0 + 2
        ),
    ]

    lines = render_timeline(events)

    assert lines[0].endswith(
        "model  step 1  anthropic:claude-x  (route long)  900.0 ms  10 in / 2 out tokens  $0.000100"
    )
    assert lines[1:4] == [
        "                try openai:gpt-4o: failed [model_rate_limited]",
        "                try openai:gpt-4o after waiting 500 ms: failed [model_server_error]",
        "                try anthropic:claude-x: skipped (breaker open)",
    ]
    assert lines[5].endswith("0 in / 0 out tokens  cached, free")
    assert lines[7].endswith("model switched to fallback #1  [output_invalid]")


def test_who_a_run_is_for_and_each_checks_own_reason_are_shown() -> None:
    from keel._core.checks import CheckRecord
    from keel._core.events import ChecksDecided

    events: list[Event] = [
        RunStarted(
            run_id="run_3",
            thread_id="t",
            agent="support",
            model="rules",
            input="Refund order 1042",
            tenant="acme",
            user="ann",
            roles=("agent", "viewer"),
            at=T0,
        ),
        ChecksDecided(
            step=1,
            point="tool_result",
            subject="result:c1",
            verdict="allow",
            results=(CheckRecord(check="injection", verdict="allow", reason="possible injection"),),
            at=T0 + 1,
        ),
    ]

    lines = render_timeline(events)

    assert "                for tenant acme, user ann, roles agent, viewer" in lines
    assert any("injection says: possible injection" in line for line in lines)


def test_a_handoff_shows_who_took_over_with_which_tools_and_instructions() -> None:
    handed = HandedOff(
        step=2,
        call_id="c9",
        from_agent="triage",
        to_agent="billing",
        instructions="You handle billing.",
        tools=("invoice",),
        models=("scripted",),
        at=T0,
    )
    assert render_timeline([handed]) == [
        "     +0.000s  handoff step 2  triage -> billing  (tools: invoice)",
        "                instructions: You handle billing.",
    ]

"""Hypothesis strategies for journal events, shared by the core and store tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from keel._core.events import (
    ApprovalRequested,
    CallDecided,
    ChildRun,
    ErrorInfo,
    Event,
    HandedOff,
    ModelFailed,
    ModelResponded,
    ModelSwitched,
    OutputRejected,
    PendingCall,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
    ToolCallWaiting,
)
from keel._core.limits import Limits
from keel._core.messages import AssistantMessage, Attempt, ToolCall
from keel._core.usage import Usage

# JSON cannot carry lone surrogates; everything else is fair game, including emoji and NULs.
text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
short = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)
seconds = st.floats(min_value=0, max_value=2e9, allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=10_000)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)

errors = st.builds(ErrorInfo, code=short, message=text)
usages = st.builds(
    Usage,
    requests=st.integers(min_value=0, max_value=3),
    input_tokens=counts,
    output_tokens=counts,
    cached_input_tokens=counts,
    reasoning_tokens=counts,
)
limits = st.builds(
    Limits,
    max_steps=st.integers(min_value=1, max_value=1000),
    max_tool_calls=st.integers(min_value=1, max_value=1000),
    max_tool_calls_per_turn=st.integers(min_value=1, max_value=50),
    max_total_tokens=st.integers(min_value=1, max_value=10**7),
    max_wall_time_s=st.floats(min_value=0.1, max_value=1e5),
    max_repeated_calls=st.integers(min_value=1, max_value=20),
    max_turns_without_progress=st.integers(min_value=1, max_value=20),
    max_output_retries=st.integers(min_value=0, max_value=5),
    tool_timeout_s=st.floats(min_value=0.1, max_value=1e4),
)
tool_calls = st.builds(ToolCall, id=short, name=short, arguments=text)
assistant_messages = st.builds(
    AssistantMessage,
    content=st.none() | text,
    tool_calls=st.lists(tool_calls, max_size=3, unique_by=lambda c: c.id).map(tuple),
)
costs = st.none() | st.floats(min_value=0, max_value=100, allow_nan=False)
attempts = st.lists(
    st.builds(
        Attempt,
        model=short,
        code=st.none() | short,
        message=st.none() | text,
        latency_ms=seconds,
        waited_ms=seconds,
        skipped=st.booleans(),
    ),
    max_size=3,
).map(tuple)

run_started = st.builds(
    RunStarted,
    run_id=short,
    thread_id=short,
    agent=short,
    model=short,
    input=text,
    instructions=text,
    history_count=st.just(0),
    tools=st.lists(short, max_size=3).map(tuple),
    limits=limits,
    output_schema=st.none() | st.dictionaries(short, json_values, max_size=3),
    agent_ref=st.none() | text,
    history_seq=st.none() | st.just(0),
    forked_from=st.none() | short,
    fork_step=st.none() | st.integers(min_value=0, max_value=100),
    parent_run_id=st.none() | short,
    parent_step=st.none() | st.integers(min_value=1, max_value=100),
    parent_call_id=st.none() | short,
    at=seconds,
)

steps = st.integers(min_value=1, max_value=1000)
child_runs = st.builds(
    ChildRun,
    run_id=short,
    agent=short,
    status=st.sampled_from(["completed", "failed", "awaiting_approval", "paused"]),
    usage=usages,
    cost_usd=costs,
)
later_events: st.SearchStrategy[Event] = st.one_of(
    st.builds(
        ModelResponded,
        step=steps,
        model=short,
        message=assistant_messages,
        usage=usages,
        cost_usd=costs,
        latency_ms=seconds,
        finish_reason=st.none() | short,
        attempts=attempts,
        cached=st.booleans(),
        route=st.none() | short,
        at=seconds,
    ),
    st.builds(
        ModelFailed,
        step=steps,
        model=short,
        error=errors,
        retryable=st.booleans(),
        status=st.none() | st.integers(min_value=100, max_value=599),
        attempts=attempts,
        at=seconds,
    ),
    st.builds(ToolCallStarted, step=steps, call=tool_calls, idempotency_key=short, at=seconds),
    st.builds(
        ToolCallFinished,
        step=steps,
        call=tool_calls,
        result=text,
        error=st.none() | errors,
        latency_ms=seconds,
        attempts=st.integers(min_value=1, max_value=5),
        children=st.lists(child_runs, max_size=2).map(tuple),
        at=seconds,
    ),
    st.builds(
        ToolCallWaiting, step=steps, call=tool_calls, child=child_runs, reason=errors, at=seconds
    ),
    st.builds(OutputRejected, step=steps, error=text, at=seconds),
    st.builds(
        ApprovalRequested,
        step=steps,
        calls=st.lists(
            st.builds(
                PendingCall,
                call=tool_calls,
                kind=st.sampled_from(["approval", "interrupted"]),
                idempotency_key=short,
            ),
            max_size=2,
        ).map(tuple),
        at=seconds,
    ),
    st.builds(
        CallDecided,
        call_id=short,
        decision=st.sampled_from(["approve", "reject", "edit", "done"]),
        by=text,
        reason=st.none() | text,
        arguments=st.none() | text,
        result=st.none() | text,
        at=seconds,
    ),
    st.builds(RunPaused, reason=errors, at=seconds),
    st.builds(
        ModelSwitched,
        step=steps,
        model_index=st.integers(min_value=1, max_value=3),
        reason=errors,
        correction=st.none() | text,
        at=seconds,
    ),
    st.builds(RunResumed, limits=limits, at=seconds),
    st.builds(
        HandedOff,
        step=steps,
        call_id=short,
        from_agent=short,
        to_agent=short,
        instructions=text,
        tools=st.lists(short, max_size=3).map(tuple),
        models=st.lists(short, max_size=2).map(tuple),
        at=seconds,
    ),
    st.builds(
        RunFinished,
        status=st.sampled_from(["completed", "failed", "cancelled"]),
        output=json_values,
        error=st.none() | errors,
        at=seconds,
    ),
)

journals: st.SearchStrategy[list[Event]] = st.tuples(
    run_started, st.lists(later_events, max_size=25)
).map(lambda pair: [pair[0], *pair[1]])

"""Realistic journal data for the store tests: a weather agent that calls one tool."""

from __future__ import annotations

import dataclasses
from typing import Any

from keel._core.events import (
    ErrorInfo,
    Event,
    ModelResponded,
    RunFinished,
    RunStarted,
    RunStatus,
    ToolCallFinished,
    ToolCallStarted,
)
from keel._core.limits import Limits
from keel._core.messages import AssistantMessage, Message, ToolCall, ToolResultMessage, UserMessage
from keel._core.usage import Usage
from keel.ports import RunRecord

T0 = 1_700_000_000.0
MODEL = "openai:gpt-4o-mini"


def record(
    run_id: str = "run-1",
    *,
    thread_id: str = "thread-1",
    status: RunStatus = "running",
    created_at: float = T0,
    **changes: Any,
) -> RunRecord:
    """A run summary; ``changes`` override any other field."""
    base = RunRecord(
        run_id=run_id,
        thread_id=thread_id,
        agent="weather",
        model=MODEL,
        status=status,
        created_at=created_at,
        updated_at=created_at,
        input="What's the weather in Paris?",
    )
    return dataclasses.replace(base, **changes)


def started(run_id: str = "run-1", *, thread_id: str = "thread-1", at: float = T0) -> RunStarted:
    """The first event of a run."""
    return RunStarted(
        run_id=run_id,
        thread_id=thread_id,
        agent="weather",
        model=MODEL,
        input="What's the weather in Paris?",
        instructions="Answer briefly. Use the tools.",
        tools=("get_weather",),
        limits=Limits(max_steps=10),
        output_schema={"type": "object", "properties": {"summary": {"type": "string"}}},
        at=at,
    )


def tool_step(step: int, *, at: float = T0, call_id: str | None = None) -> list[Event]:
    """One step that calls a tool: the model's answer, the call starting and finishing."""
    call = ToolCall(
        id=call_id or f"call_{step}",
        name="get_weather",
        arguments='{"city": "Paris", "unit": "celsius"}',
    )
    return [
        ModelResponded(
            step=step,
            model=MODEL,
            message=AssistantMessage(content="Let me check.", tool_calls=(call,)),
            usage=Usage(requests=1, input_tokens=812, output_tokens=41, cached_input_tokens=512),
            cost_usd=0.000146,
            latency_ms=420.5,
            finish_reason="tool_calls",
            at=at + step,
        ),
        ToolCallStarted(
            step=step, call=call, idempotency_key=f"run-1:{step}:{call.id}", at=at + step + 0.1
        ),
        ToolCallFinished(
            step=step,
            call=call,
            result='{"temp_c": 18, "sky": "cloudy"}',
            latency_ms=3.25,
            at=at + step + 0.2,
        ),
    ]


def failed_tool_step(step: int, *, at: float = T0) -> list[Event]:
    """A step whose tool call was rejected before running."""
    call = ToolCall(id=f"call_{step}", name="get_wether", arguments="{city: Paris")
    return [
        ModelResponded(
            step=step,
            model=MODEL,
            message=AssistantMessage(tool_calls=(call,)),
            usage=Usage(requests=1, input_tokens=900, output_tokens=12),
            at=at + step,
        ),
        ToolCallFinished(
            step=step,
            call=call,
            result="unknown tool 'get_wether'; available: get_weather",
            error=ErrorInfo(code="tool.unknown", message="unknown tool 'get_wether'"),
            at=at + step + 0.1,
        ),
    ]


def finishing_step(step: int, *, at: float = T0) -> list[Event]:
    """The final answer and the end of the run."""
    return [
        ModelResponded(
            step=step,
            model=MODEL,
            message=AssistantMessage(content='{"summary": "18 °C and cloudy in Paris ☁️"}'),
            usage=Usage(requests=1, input_tokens=950, output_tokens=20),
            cost_usd=0.000155,
            finish_reason="stop",
            at=at + step,
        ),
        RunFinished(
            status="completed",
            output={"summary": "18 °C and cloudy in Paris ☁️", "sources": [1, 2.5, None, True]},
            at=at + step + 0.1,
        ),
    ]


def conversation(question: str = "What's the weather in Paris?") -> list[Message]:
    """The messages a completed run adds to its thread."""
    return [
        UserMessage(content=question),
        AssistantMessage(
            tool_calls=(ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),)
        ),
        ToolResultMessage(tool_call_id="call_1", name="get_weather", content='{"temp_c": 18}'),
        AssistantMessage(content="18 °C and cloudy."),
    ]

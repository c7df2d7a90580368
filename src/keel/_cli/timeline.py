"""A run's journal as a readable timeline: every model call, tool call, pause and the outcome.

Pure functions from records and events to lines of text, so the output is easy to test and
the same on a terminal, in a pipe and in a CI log.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Sequence

from keel._core.events import (
    ApprovalRequested,
    CallDecided,
    Event,
    ModelFailed,
    ModelResponded,
    ModelSwitched,
    OutputRejected,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from keel._core.messages import Attempt
from keel._core.usage import Usage
from keel.ports import RunRecord

__all__ = ["format_cost", "format_time", "render_summary", "render_timeline"]

_WIDTH = 100
_VALUE_LIMIT = 300
_INDENT = " " * 16  # two past the column where descriptions start


def format_cost(cost: float | None) -> str:
    """``$0.000123``, or ``unknown`` when a price was missing (never ``$0``)."""
    return "unknown" if cost is None else f"${cost:.6f}"


def format_time(at: float) -> str:
    """A UTC timestamp, to the second."""
    return dt.datetime.fromtimestamp(at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clip(text: str, limit: int = _VALUE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _tokens(usage: Usage) -> str:
    parts = [f"{usage.input_tokens:,} in", f"{usage.output_tokens:,} out"]
    if usage.cached_input_tokens:
        parts.append(f"{usage.cached_input_tokens:,} cached")
    if usage.reasoning_tokens:
        parts.append(f"{usage.reasoning_tokens:,} reasoning")
    return " / ".join(parts) + " tokens"


def _wrapped(label: str, text: str) -> list[str]:
    lines = textwrap.wrap(
        _clip(text), width=_WIDTH, initial_indent=f"{_INDENT}{label}", subsequent_indent=_INDENT
    )
    return lines or [f"{_INDENT}{label}"]


def _attempt_lines(attempts: Sequence[Attempt]) -> list[str]:
    """The tries that did not answer (the one that did is the event itself)."""
    lines = []
    for attempt in attempts:
        if attempt.ok:
            continue
        waited = f" after waiting {attempt.waited_ms:.0f} ms" if attempt.waited_ms else ""
        what = "skipped (breaker open)" if attempt.skipped else f"failed [{attempt.code}]"
        lines.append(f"{_INDENT}try {attempt.model}{waited}: {what}")
    return lines


def render_summary(record: RunRecord) -> list[str]:
    """The header of ``keel runs show``."""
    duration = max(0.0, record.updated_at - record.created_at)
    lines = [
        f"run      {record.run_id}",
        f"agent    {record.agent}  (model {record.model})",
        f"thread   {record.thread_id}",
        f"status   {record.status}",
        f"started  {format_time(record.created_at)}  ({duration:.3f}s)",
        f"usage    {_plural(record.steps, 'step')}, {_plural(record.tool_calls, 'tool call')}, "
        f"{record.input_tokens:,} in / {record.output_tokens:,} out tokens, "
        f"cost {format_cost(record.cost_usd)}",
    ]
    if record.reason:
        lines.append(f"reason   {record.reason} [{record.reason_code}]")
    return lines


def _describe(event: Event) -> list[str]:
    if isinstance(event, RunStarted):
        lines = [
            f"run started    agent {event.agent}, model {event.model}, thread {event.thread_id}, "
            f"{_plural(len(event.tools), 'tool')}, "
            f"{_plural(event.history_count, 'earlier message')}",
        ]
        if event.forked_from is not None:
            lines.append(f"{_INDENT}forked from {event.forked_from} after step {event.fork_step}")
        return [*lines, *_wrapped("input: ", event.input)]
    if isinstance(event, ApprovalRequested):
        lines = ["waiting for a person"]
        for pending in event.calls:
            why = "needs approval" if pending.kind == "approval" else "was interrupted"
            call = pending.call
            lines += _wrapped(f"call {call.id} {why}: ", f"{call.name}({call.arguments})")
        return lines
    if isinstance(event, CallDecided):
        detail = event.reason or event.arguments or event.result or ""
        lines = [f"decided        {event.decision} call {event.call_id} by {event.by}"]
        return lines + (_wrapped("", detail) if detail else [])
    if isinstance(event, ModelResponded):
        cost = "cached, free" if event.cached else format_cost(event.cost_usd)
        via = f"  (route {event.route})" if event.route else ""
        lines = [
            f"model  step {event.step}  {event.model}{via}  {event.latency_ms:.1f} ms  "
            f"{_tokens(event.usage)}  {cost}",
            *_attempt_lines(event.attempts),
        ]
        if event.message.content:
            lines += _wrapped("says: ", event.message.content)
        lines += [
            f"{_INDENT}asks: {c.name}({_clip(c.arguments, 200)})" for c in event.message.tool_calls
        ]
        return lines
    if isinstance(event, ModelFailed):
        status = f" HTTP {event.status}" if event.status else ""
        return [
            f"model  step {event.step}  {event.model}  FAILED{status} after "
            f"{event.latency_ms:.1f} ms [{event.error.code}]",
            *_attempt_lines(event.attempts),
            *_wrapped("", event.error.message),
        ]
    if isinstance(event, ModelSwitched):
        return [
            f"model switched to fallback #{event.model_index}  [{event.reason.code}]",
            *_wrapped("", event.reason.message),
        ]
    if isinstance(event, ToolCallStarted):
        return [f"tool   {event.call.name} started  (key {event.idempotency_key})"]
    if isinstance(event, ToolCallFinished):
        verdict = f"FAILED [{event.error.code}]" if event.error else "done"
        return [
            f"tool   {event.call.name} {verdict}  {event.latency_ms:.1f} ms",
            *_wrapped("args: ", event.call.arguments),
            *_wrapped("result: ", event.result),
        ]
    if isinstance(event, OutputRejected):
        return ["output rejected  (sent back to the model)", *_wrapped("", event.error)]
    if isinstance(event, RunPaused):
        return [f"run paused     [{event.reason.code}]", *_wrapped("", event.reason.message)]
    if isinstance(event, RunResumed):
        return [
            f"run resumed    max_steps {event.limits.max_steps}, "
            f"max_tool_calls {event.limits.max_tool_calls}"
        ]
    if isinstance(event, RunFinished):
        lines = [f"run {event.status}"]
        if event.error is not None:
            lines += _wrapped(f"[{event.error.code}] ", event.error.message)
        if event.output is not None:
            shown = event.output if isinstance(event.output, str) else json.dumps(event.output)
            lines += _wrapped("output: ", shown)
        return lines
    return [type(event).__name__]  # pragma: no cover - every event type is handled above


def render_timeline(events: Sequence[Event]) -> list[str]:
    """One entry per event: seconds since the run started, then what happened."""
    if not events:
        return []
    origin = events[0].at
    lines: list[str] = []
    for event in events:
        first, *rest = _describe(event)
        lines.append(f"{f'+{event.at - origin:.3f}s':>12}  {first}")
        lines.extend(rest)
    return lines

"""A run's journal as a readable timeline: every model call, tool call, pause and the outcome.

Pure functions from records and events to lines of text, so the output is easy to test and
the same on a terminal, in a pipe and in a CI log.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from keel._core.codec import event_to_dict
from keel._core.delegation import ToolCallWaiting
from keel._core.events import (
    ApprovalRequested,
    CallDecided,
    CancelRequested,
    ChecksDecided,
    Event,
    HandedOff,
    ModelFailed,
    ModelResponded,
    ModelSwitched,
    OutputRejected,
    RunDequeued,
    RunFinished,
    RunPaused,
    RunQueued,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
)
from keel._core.messages import Attempt
from keel._core.usage import Usage
from keel.ports import RunRecord

__all__ = [
    "RENDERERS",
    "describe",
    "format_cost",
    "format_time",
    "render_summary",
    "render_timeline",
]

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
    if record.lease_owner is not None and record.lease_expires_at is not None:
        lines.append(f"lease    {record.lease_owner} until {format_time(record.lease_expires_at)}")
    return lines


def _run_started(event: RunStarted) -> list[str]:
    lines = [
        f"run {'queued ' if event.queued else 'started'}    agent {event.agent}, model "
        f"{event.model}, thread {event.thread_id}, {_plural(len(event.tools), 'tool')}, "
        f"{_plural(event.history_count - event.history_from, 'earlier message')}",
    ]
    if event.forked_from is not None:
        lines.append(f"{_INDENT}forked from {event.forked_from} after step {event.fork_step}")
    if event.parent_run_id is not None:
        lines.append(
            f"{_INDENT}child of run {event.parent_run_id} (step {event.parent_step}, call "
            f"{event.parent_call_id})"
        )
    people = (("tenant", event.tenant), ("user", event.user))
    who = [f"{name} {value}" for name, value in people if value is not None]
    if event.roles:
        who.append(f"roles {', '.join(event.roles)}")
    if who:
        lines.append(f"{_INDENT}for {', '.join(who)}")
    return [*lines, *_wrapped("input: ", event.input)]


def _run_dequeued(event: RunDequeued) -> list[str]:
    count = event.history_count - event.history_from
    return [f"run started    from the queue, {_plural(count, 'earlier message')}"]


def _run_queued(event: RunQueued) -> list[str]:
    return [f"run queued     ({event.reason})"]


def _approval_requested(event: ApprovalRequested) -> list[str]:
    lines = ["waiting for a person"]
    for pending in event.calls:
        why = {
            "approval": "needs approval",
            "interrupted": "was interrupted",
            "escalated": f"was escalated by check '{pending.check}'",
        }.get(pending.kind, pending.kind)
        call = pending.call
        lines += _wrapped(f"call {call.id} {why}: ", f"{call.name}({call.arguments})")
        if pending.reason:
            lines += _wrapped("why: ", pending.reason)
    return lines


def _call_decided(event: CallDecided) -> list[str]:
    detail = event.reason or event.arguments or event.result or ""
    lines = [f"decided        {event.decision} call {event.call_id} by {event.by}"]
    return lines + (_wrapped("", detail) if detail else [])


def _model_responded(event: ModelResponded) -> list[str]:
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


def _model_failed(event: ModelFailed) -> list[str]:
    status = f" HTTP {event.status}" if event.status else ""
    return [
        f"model  step {event.step}  {event.model}  FAILED{status} after "
        f"{event.latency_ms:.1f} ms [{event.error.code}]",
        *_attempt_lines(event.attempts),
        *_wrapped("", event.error.message),
    ]


def _model_switched(event: ModelSwitched) -> list[str]:
    return [
        f"model switched to fallback #{event.model_index}  [{event.reason.code}]",
        *_wrapped("", event.reason.message),
    ]


def _handed_off(event: HandedOff) -> list[str]:
    tools = ", ".join(event.tools) or "no tools"
    return [
        f"handoff step {event.step}  {event.from_agent} -> {event.to_agent}  (tools: {tools})",
        *_wrapped("instructions: ", event.instructions),
    ]


def _tool_started(event: ToolCallStarted) -> list[str]:
    again = f", attempt {event.attempt}" if event.attempt > 1 else ""
    return [f"tool   {event.call.name} started  (key {event.idempotency_key}{again})"]


def _tool_finished(event: ToolCallFinished) -> list[str]:
    verdict = f"FAILED [{event.error.code}]" if event.error else "done"
    cut = "" if event.result_chars is None else f"  (result cut from {event.result_chars:,} chars)"
    return [
        f"tool   {event.call.name} {verdict}  {event.latency_ms:.1f} ms{cut}",
        *_wrapped("args: ", event.call.arguments),
        *_wrapped("result: ", event.result),
        *(
            f"{_INDENT}child run {c.run_id} ({c.agent}) {c.status}, "
            f"{_tokens(c.usage)}, cost {format_cost(c.cost_usd)}"
            for c in event.children
        ),
    ]


def _tool_waiting(event: ToolCallWaiting) -> list[str]:
    child = event.child
    return [
        f"tool   {event.call.name} waits for child run {child.run_id} ({child.agent}, "
        f"{child.status})",
        *_wrapped("", event.reason.message),
    ]


def _tool_in_doubt(event: ToolCallInDoubt) -> list[str]:
    return [
        f"tool   {event.call.name} IN DOUBT  [{event.reason.code}]",
        *_wrapped("", event.reason.message),
    ]


def _checks_decided(event: ChecksDecided) -> list[str]:
    names = ", ".join(f"{r.check}: {r.verdict}" for r in event.results) or "no checks"
    lines = [f"checks {event.point} {event.subject}: {event.verdict.upper()}  ({names})"]
    if event.reason:
        lines += _wrapped("why: ", event.reason)
    for result in event.results:
        # A check that let the subject through may still have said something (a flag).
        if result.reason and result.reason != event.reason:
            lines += _wrapped(f"{result.check} says: ", result.reason)
    return lines


def _output_rejected(event: OutputRejected) -> list[str]:
    return ["output rejected  (sent back to the model)", *_wrapped("", event.error)]


def _run_paused(event: RunPaused) -> list[str]:
    return [f"run paused     [{event.reason.code}]", *_wrapped("", event.reason.message)]


def _run_resumed(event: RunResumed) -> list[str]:
    models = f", models {', '.join(event.models)}" if event.models else ""
    return [
        f"run resumed    max_steps {event.limits.max_steps}, "
        f"max_tool_calls {event.limits.max_tool_calls}{models}"
    ]


def _cancel_requested(event: CancelRequested) -> list[str]:
    return [
        "run cancelling (a call's effect is in doubt: a person says what happened first)",
        *_wrapped("", event.reason.message),
    ]


def _run_finished(event: RunFinished) -> list[str]:
    lines = [f"run {event.status}"]
    if event.error is not None:
        lines += _wrapped(f"[{event.error.code}] ", event.error.message)
    if event.output is not None:
        shown = event.output if isinstance(event.output, str) else json.dumps(event.output)
        lines += _wrapped("output: ", shown)
    return lines


Renderer = Callable[[Any], list[str]]

#: How each event kind is shown, by type tag; a kind without one is shown by its fields.
RENDERERS: dict[str, Renderer] = {
    "run_started": _run_started,
    "run_dequeued": _run_dequeued,
    "run_queued": _run_queued,
    "approval_requested": _approval_requested,
    "call_decided": _call_decided,
    "model_responded": _model_responded,
    "model_failed": _model_failed,
    "model_switched": _model_switched,
    "handed_off": _handed_off,
    "tool_call_started": _tool_started,
    "tool_call_finished": _tool_finished,
    "tool_call_in_doubt": _tool_in_doubt,
    "tool_call_waiting": _tool_waiting,
    "checks_decided": _checks_decided,
    "output_rejected": _output_rejected,
    "run_paused": _run_paused,
    "run_resumed": _run_resumed,
    "cancel_requested": _cancel_requested,
    "run_finished": _run_finished,
}


def describe(event: Event) -> list[str]:
    """An event as lines of text: its kind's renderer, or its fields."""
    renderer = RENDERERS.get(event.type)
    if renderer is not None:
        return renderer(event)
    fields = {k: v for k, v in event_to_dict(event).items() if k not in ("type", "v", "at")}
    return [event.type, *_wrapped("", json.dumps(fields, default=str))]


def render_timeline(events: Sequence[Event]) -> list[str]:
    """One entry per event: seconds since the run started, then what happened."""
    if not events:
        return []
    origin = events[0].at
    lines: list[str] = []
    for event in events:
        first, *rest = describe(event)
        lines.append(f"{f'+{event.at - origin:.3f}s':>12}  {first}")
        lines.extend(rest)
    return lines

"""Runs, events, steps and feedback as the API shows them: in the client's names (its own
thread names, never the tenant's namespace), as JSON."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python

from keel._core.codec import event_to_dict
from keel._core.eventbase import Event
from keel._core.events import PendingCall
from keel._core.steps import Step
from keel._runtime.result import RunResult
from keel.ports import Feedback, RunRecord
from keel.server._auth import Principal
from keel.server._models_more import FeedbackView
from keel.server._models_runs import (
    EventView,
    PendingCallView,
    ReasonView,
    RunSummary,
    RunView,
    StepView,
    UsageView,
)
from keel.server._tenancy import client_thread

__all__ = [
    "event_view",
    "feedback_view",
    "pending_view",
    "run_summary",
    "run_view",
    "step_view",
]


def pending_view(pending: PendingCall) -> PendingCallView:
    """A call waiting for a person."""
    return PendingCallView(
        call_id=pending.call.id,
        tool=pending.call.name,
        arguments=pending.call.arguments,
        kind=pending.kind,
        reason=pending.reason,
    )


def run_view(principal: Principal, record: RunRecord, result: RunResult[Any]) -> RunView:
    """A run with its outcome (``record`` for who and when, ``result`` for the rest)."""
    usage = result.usage
    return RunView(
        run_id=result.run_id,
        thread=client_thread(principal, result.thread_id),
        agent=result.agent,
        model=result.model,
        status=result.status,
        output=to_jsonable_python(result.output_or_none, fallback=str),
        reason=None
        if result.reason is None
        else ReasonView(code=result.reason.code, message=result.reason.message),
        pending=[pending_view(p) for p in result.pending],
        usage=UsageView(
            requests=usage.requests,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
        ),
        cost_usd=result.cost_usd,
        steps=result.steps,
        tool_calls=result.tool_calls,
        user=record.user,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def run_summary(principal: Principal, record: RunRecord) -> RunSummary:
    """A run as listings show it."""
    return RunSummary(
        run_id=record.run_id,
        thread=client_thread(principal, record.thread_id),
        agent=record.agent,
        model=record.model,
        status=record.status,
        input=record.input,
        output_preview=record.output_preview,
        steps=record.steps,
        tool_calls=record.tool_calls,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        cost_usd=record.cost_usd,
        reason_code=record.reason_code,
        reason=record.reason,
        tools=list(record.tools),
        user=record.user,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def event_view(principal: Principal, seq: int, event: Event) -> EventView:
    """A journal event as JSON, with its thread in the client's name."""
    data = event_to_dict(event)
    thread = data.get("thread_id")
    if isinstance(thread, str):
        data["thread_id"] = client_thread(principal, thread)
    return EventView(seq=seq, type=event.type, event=data)


def step_view(step: Step) -> StepView:
    """A model turn and what followed from it."""
    return StepView.model_validate(to_jsonable_python(step.to_dict(), fallback=str))


def feedback_view(feedback: Feedback) -> FeedbackView:
    """Recorded feedback."""
    return FeedbackView(
        id=feedback.id,
        run_id=feedback.run_id,
        step=feedback.step,
        score=feedback.score,
        label=feedback.label,
        comment=feedback.comment,
        by=feedback.by,
        at=feedback.at,
    )

"""People's decisions and feedback: approve, edit or reject a pending call, list what waits,
and record or read feedback on a run.

A decision is journaled under the run's lease and puts the run back in the queue (when
nothing else waits): a worker drives it on, so the request answers at once. With an API key
the decision is the key's user's; only the local operator may say ``by`` whom.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from keel._core.events import PendingCall
from keel._core.toolspec import ToolArgumentsError
from keel.errors import UsageError
from keel.server._auth import Principal, require
from keel.server._errors import ApiError
from keel.server._models_more import (
    ApprovalList,
    ApprovalView,
    Approve,
    Edit,
    FeedbackList,
    FeedbackView,
    GiveFeedback,
    Reject,
)
from keel.server._models_runs import RunView
from keel.server._openapi import errors
from keel.server._routes_runs import RunId
from keel.server._state import ServerState, request_state
from keel.server._tenancy import client_thread, visible, visible_run
from keel.server._views import feedback_view, pending_view, run_view

__all__ = ["decide", "router"]

router = APIRouter(prefix="/v1", tags=["decisions"])
State = Annotated[ServerState, Depends(request_state)]


def _decider(principal: Principal, by: str | None) -> str:
    """Who decides: the key's user; the local operator may name someone (default ``api``)."""
    if principal.local:
        return by or "api"
    if by is not None and by != principal.user:
        raise ApiError(
            422,
            "invalid_request",
            "by: with an API key, decisions are the key's user's; leave 'by' out",
            field="by",
        )
    assert principal.user is not None
    return principal.user


async def _pending(state: ServerState, run_id: str, call_id: str | None) -> PendingCall:
    """The call to decide on, or a 404/409/422 that says which calls wait."""
    calls = await state.runtime.pending_calls(run_id)
    if not calls:
        raise ApiError(409, "nothing_pending", f"run {run_id} has no call waiting for a decision")
    waiting = ", ".join(f"{c.call.id} ({c.call.name})" for c in calls)
    if call_id is None:
        if len(calls) > 1:
            raise ApiError(
                422,
                "invalid_request",
                f"call_id: several calls wait ({waiting}); say which one",
                field="call_id",
            )
        return calls[0]
    for pending in calls:
        if pending.call.id == call_id:
            return pending
    raise ApiError(
        404,
        "call_not_pending",
        f"call {call_id} is not waiting for a decision; waiting: {waiting}",
        field="call_id",
    )


async def decide(
    state: ServerState,
    principal: Principal,
    run_id: str,
    decision: Approve | Edit | Reject,
) -> RunView:
    """Journal ``decision`` on a run the caller may see, and where the run stands after it
    (queued for a worker, when nothing else waits)."""
    record = await visible_run(state, principal, run_id)
    by = _decider(principal, decision.by)
    pending = await _pending(state, run_id, decision.call_id)
    runtime = state.runtime
    call_id = pending.call.id
    try:
        if isinstance(decision, Reject):
            result = await runtime.reject(
                run_id, call_id, by=by, reason=decision.reason, resume=False
            )
        elif isinstance(decision, Edit):
            _check_arguments(state, record.agent, pending, decision.arguments)
            result = await runtime.approve(
                run_id, call_id, by=by, arguments=decision.arguments, resume=False
            )
        else:
            result = await runtime.approve(run_id, call_id, by=by, resume=False)
    except UsageError as exc:
        raise ApiError(409, "conflict", exc.message) from None
    return run_view(principal, await runtime.get_run(run_id), result)


def _check_arguments(
    state: ServerState, agent: str, pending: PendingCall, arguments: dict[str, Any]
) -> None:
    """422 naming what is wrong when edited arguments do not fit the tool's schema."""
    served = state.agents.get(agent)
    tool = None if served is None else served.loop_spec.tools.get(pending.call.name)
    if tool is None:
        return  # the runtime decides (it refuses editing what is not a tool call)
    try:
        tool.validate(json.dumps(arguments))
    except ToolArgumentsError as exc:
        raise ApiError(
            422, "invalid_request", f"arguments: {exc.message}", field="arguments"
        ) from None


@router.post(
    "/runs/{run_id}/approve",
    response_model=RunView,
    summary="Approve a pending call",
    responses=errors(404, 409),
)
async def approve(
    run_id: RunId,
    state: State,
    principal: Annotated[Principal, Depends(require("approve"))],
    body: Approve | None = None,
) -> RunView:
    """Approve the pending call (``call_id`` may be left out when one waits); the run goes
    back to the queue and a worker continues it."""
    return await decide(state, principal, run_id, body or Approve())


@router.post(
    "/runs/{run_id}/edit",
    response_model=RunView,
    summary="Approve a pending call with other arguments",
    responses=errors(404, 409),
)
async def edit(
    run_id: RunId,
    body: Edit,
    state: State,
    principal: Annotated[Principal, Depends(require("approve"))],
) -> RunView:
    """Approve the pending call, to be run with ``arguments`` instead of the model's (they
    must fit the tool's schema: 422 says what does not)."""
    return await decide(state, principal, run_id, body)


@router.post(
    "/runs/{run_id}/reject",
    response_model=RunView,
    summary="Reject a pending call",
    responses=errors(404, 409),
)
async def reject(
    run_id: RunId,
    body: Reject,
    state: State,
    principal: Annotated[Principal, Depends(require("approve"))],
) -> RunView:
    """Refuse the pending call; the model is told who refused it and ``reason``."""
    return await decide(state, principal, run_id, body)


@router.get(
    "/approvals",
    response_model=ApprovalList,
    summary="What waits for a decision",
    responses=errors(),
)
async def list_approvals(
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ApprovalList:
    """Runs of the caller's tenant waiting for a decision, oldest first, with their calls."""
    found: list[ApprovalView] = []
    for record in await state.runtime.waiting_runs():
        if len(found) >= limit:
            break
        if not visible(principal, record):
            continue
        calls = await state.runtime.pending_calls(record.run_id)
        found.append(
            ApprovalView(
                run_id=record.run_id,
                thread=client_thread(principal, record.thread_id),
                agent=record.agent,
                user=record.user,
                created_at=record.created_at,
                pending=[pending_view(c) for c in calls],
            )
        )
    return ApprovalList(approvals=found)


@router.post(
    "/runs/{run_id}/feedback",
    response_model=FeedbackView,
    status_code=201,
    summary="Give feedback on a run",
    responses=errors(404),
)
async def give_feedback(
    run_id: RunId,
    body: GiveFeedback,
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
) -> JSONResponse:
    """Record a score, a label or a comment (or several) on the run, or on one of its
    steps; it is the key's user's."""
    await visible_run(state, principal, run_id)
    if body.score is None and body.label is None and body.comment is None:
        raise ApiError(
            422,
            "invalid_request",
            "body: feedback needs a score, a label or a comment (or several)",
            field="score",
        )
    try:
        recorded = await state.runtime.add_feedback(
            run_id,
            step=body.step,
            score=body.score,
            label=body.label,
            comment=body.comment,
            by=principal.user,
        )
    except UsageError as exc:
        # The only refusal left once the body is valid: a step the run does not have.
        raise ApiError(422, "invalid_request", f"step: {exc.message}", field="step") from None
    view = feedback_view(recorded)
    return JSONResponse(view.model_dump(mode="json"), status_code=201)


@router.get(
    "/runs/{run_id}/feedback",
    response_model=FeedbackList,
    summary="A run's feedback",
    responses=errors(404),
)
async def list_feedback(
    run_id: RunId,
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
) -> FeedbackList:
    """Every piece of feedback on the run, oldest first."""
    await visible_run(state, principal, run_id)
    return FeedbackList(feedback=[feedback_view(f) for f in await state.runtime.feedback(run_id)])

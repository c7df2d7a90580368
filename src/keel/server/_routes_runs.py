"""``/v1/runs``: start runs, read them, their steps and events, and cancel them."""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import StringConstraints

from keel._agent import Agent
from keel._core.events import RunStatus
from keel._core.limits import Limits
from keel.errors import ConfigurationError, UsageError
from keel.ports import RunQuery
from keel.server._auth import Principal, require
from keel.server._errors import ApiError
from keel.server._models_more import AgentList, AgentView, Cancel
from keel.server._models_runs import (
    NAME_PATTERN,
    RUN_ID_PATTERN,
    THREAD_PATTERN,
    CreateRun,
    EventList,
    RunList,
    RunView,
    StepList,
)
from keel.server._openapi import errors
from keel.server._state import ServerState, request_state
from keel.server._tenancy import store_thread, visible_run
from keel.server._views import event_view, run_summary, run_view, step_view

__all__ = [
    "CURSOR_PATTERN",
    "RunId",
    "check_queue_room",
    "router",
    "tightened_limits",
    "wanted_moment",
]

router = APIRouter(prefix="/v1", tags=["runs"])

RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="A run's id.")]
State = Annotated[ServerState, Depends(request_state)]
_STILL_GOING = ("queued", "running")
AGE_PATTERN = r"^\d{1,9}(\.\d{1,6})?[smhdw]$"
_AGE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhdw])$")
# What RunRecord.cursor looks like: a creation time (a float's repr) and a run id.
CURSOR_PATTERN = r"^-?\d{1,17}(\.\d{1,20})?([eE][+-]?\d{1,2})?/[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def tightened_limits(agent: Agent[Any], body: CreateRun) -> Limits | None:
    """The agent's limits with what the request lowers (it can never raise one)."""
    base = agent.limits
    lower: dict[str, Any] = {}
    if body.limits is not None:
        for name, value in body.limits.model_dump(exclude_none=True).items():
            current = getattr(base, name)
            lower[name] = value if current is None else min(current, value)
    if body.deadline_s is not None:
        lower["max_wall_time_s"] = min(base.max_wall_time_s, body.deadline_s)
    return dataclasses.replace(base, **lower) if lower else None


async def check_queue_room(state: ServerState) -> None:
    """429 while ``max_queued`` runs (or more) wait in the queue."""
    most = state.settings.max_queued
    if most is None:
        return
    queued = await state.runtime.store.list_runs(status="queued", limit=most)
    if len(queued) >= most:
        after = str(state.settings.retry_after_s)
        raise ApiError(
            429,
            "queue_full",
            f"{most} runs wait in the queue already (max_queued); retry after {after} s",
            headers={"Retry-After": after},
        )


@router.post(
    "/runs",
    response_model=RunView,
    summary="Start a run",
    responses={
        202: {"model": RunView, "description": "Accepted and durable; poll the Location."},
        **errors(404, 409),
    },
)
async def create_run(
    body: CreateRun,
    response: Response,
    state: State,
    principal: Annotated[Principal, Depends(require("run"))],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Your id for this request (a UUID, say): a request repeated with it "
            "(after a timeout, from any replica) gets the run the first one started.",
        ),
    ] = None,
) -> RunView:
    """Start a run of ``agent`` on ``input`` and wait up to ``wait`` seconds for it to stop
    (200 with its outcome). A run still going then, or one started with ``background``,
    answers 202 with its id and a ``Location`` to poll: it is durable, and a worker drives
    it. ``if_busy: reject`` answers 409 while an earlier run of the thread has not ended.
    With an ``Idempotency-Key`` used before (by this tenant), no run is started: the answer
    is about the run that key started."""
    settings = state.settings
    agent = state.agent(body.agent)
    wait = settings.wait_s if body.wait is None else body.wait
    if wait > settings.max_wait_s:
        raise ApiError(
            422,
            "invalid_request",
            f"wait: at most {settings.max_wait_s:g} seconds on this server (max_wait_s); poll "
            "the run's Location for longer",
            field="wait",
        )
    runtime = state.runtime
    with state.intake.slot():
        await check_queue_room(state)
        try:
            run_id = await runtime.submit(
                agent,
                body.input,
                thread=None if body.thread is None else store_thread(principal, body.thread),
                limits=tightened_limits(agent, body),
                tenant=principal.tenant,
                user=principal.user,
                roles=principal.roles,
                if_busy=body.if_busy,
                idempotency_key=idempotency_key,
            )
        except ConfigurationError as exc:
            raise ApiError(503, "agent_unavailable", exc.message, field="agent") from None
        result = None
        if not body.background and wait > 0:
            # A drain ends the wait at once: the run is durable and goes on elsewhere.
            result = await state.unless_draining(runtime.wait(run_id, timeout_s=wait))
        if result is None:
            result = await runtime.result(run_id)
        record = await runtime.get_run(run_id)
    if result.status in _STILL_GOING:
        response.status_code = 202
        response.headers["Location"] = f"/v1/runs/{run_id}"
    return run_view(principal, record, result)


def wanted_moment(value: float | datetime | str | None) -> float | None:
    """``since``/``until`` as seconds since the epoch: given so, an ISO 8601 time (UTC unless
    it says otherwise), or an age (``30m``, ``2d``: that long ago)."""
    if value is None or isinstance(value, float | int):
        return value
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    match = _AGE.match(value)
    assert match is not None  # the parameter's pattern let only ages through
    return time.time() - float(match["n"]) * _SECONDS[match["unit"]]


Status = Literal[
    "queued", "running", "completed", "failed", "paused", "awaiting_approval", "cancelled"
]
_Name = Annotated[str | None, Query(pattern=NAME_PATTERN)]
_Money = Annotated[float | None, Query(ge=0, le=1_000_000, allow_inf_nan=False)]
_Seconds = Annotated[float | None, Query(ge=0, le=1e9, allow_inf_nan=False)]
_Age = Annotated[str, StringConstraints(pattern=AGE_PATTERN)]
_Moment = Annotated[
    float | datetime | _Age | None,
    Query(description="Epoch seconds, an ISO 8601 time, or an age: 30m, 2d (that long ago)."),
]
_Cursor = Annotated[
    str | None,
    Query(pattern=CURSOR_PATTERN, description="The next_cursor of the previous page."),
]


@router.get("/runs", response_model=RunList, summary="Find runs", responses=errors())
async def list_runs(
    *,
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
    agent: _Name = None,
    status: Annotated[list[Status] | None, Query()] = None,
    thread: Annotated[str | None, Query(pattern=THREAD_PATTERN)] = None,
    user: _Name = None,
    since: _Moment = None,
    until: _Moment = None,
    tool: _Name = None,
    error: _Name = None,
    min_cost: _Money = None,
    max_cost: _Money = None,
    min_duration: _Seconds = None,
    max_duration: _Seconds = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: _Cursor = None,
) -> RunList:
    """Runs of the caller's tenant, newest first, matching every filter given (the decision
    history of ``keel runs list``); ``next_cursor`` fetches the next page."""
    query = RunQuery(
        agent=agent,
        status=None if not status else cast("tuple[RunStatus, ...]", tuple(status)),
        thread=None if thread is None else store_thread(principal, thread),
        tenant=principal.tenant,
        user=user,
        since=wanted_moment(since),
        until=wanted_moment(until),
        tool=tool,
        error=error,
        min_cost=min_cost,
        max_cost=max_cost,
        min_duration=min_duration,
        max_duration=max_duration,
    )
    try:
        page = await state.runtime.query_runs(query, limit=limit, before=cursor)
    except UsageError:
        raise ApiError(
            422,
            "invalid_request",
            "cursor: not a page cursor; pass the next_cursor of the previous page",
            field="cursor",
        ) from None
    return RunList(runs=[run_summary(principal, r) for r in page.runs], next_cursor=page.next)


@router.get("/runs/{run_id}", response_model=RunView, summary="Read a run", responses=errors(404))
async def get_run(
    run_id: RunId,
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
) -> RunView:
    """Where a run stands, with its answer once it completed and what waits for people."""
    record = await visible_run(state, principal, run_id)
    result = await state.runtime.result(run_id)
    return run_view(principal, record, result)


@router.get(
    "/runs/{run_id}/steps",
    response_model=StepList,
    summary="A run's steps",
    responses=errors(404),
)
async def get_steps(
    run_id: RunId,
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
) -> StepList:
    """Each model turn: what the model said, the tools it called with their arguments and
    results, the decisions people made, latency, tokens and cost."""
    await visible_run(state, principal, run_id)
    return StepList(steps=[step_view(s) for s in await state.runtime.steps(run_id)])


@router.get(
    "/runs/{run_id}/events",
    response_model=EventList,
    summary="A run's journal events",
    responses=errors(404),
)
async def get_events(
    run_id: RunId,
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
    after: Annotated[int, Query(ge=0, le=2**62, description="Events after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> EventList:
    """The run's journal events numbered above ``after``, in order (at most ``limit``);
    ``last_seq`` is the ``after`` of the next call."""
    await visible_run(state, principal, run_id)
    events = (await state.runtime.store.load(run_id, after_seq=after))[:limit]
    views = [event_view(principal, after + i, e) for i, e in enumerate(events, 1)]
    return EventList(events=views, last_seq=after + len(views))


@router.post(
    "/runs/{run_id}/cancel",
    response_model=RunView,
    summary="Cancel a run",
    responses=errors(404, 409),
)
async def cancel_run(
    run_id: RunId,
    state: State,
    principal: Annotated[Principal, Depends(require("run"))],
    body: Cancel | None = None,
) -> RunView:
    """End a run for good (status ``cancelled``), whatever it is doing; its thread is free
    at once."""
    await visible_run(state, principal, run_id)
    reason = body.reason if body is not None and body.reason else "cancelled through the API"
    result = await state.runtime.cancel(run_id, reason=reason)
    record = await state.runtime.get_run(run_id)
    return run_view(principal, record, result)


@router.get("/agents", response_model=AgentList, summary="The agents served", responses=errors())
async def list_agents(
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
) -> AgentList:
    """The agents this server runs, with their tools."""
    return AgentList(
        agents=[
            AgentView(name=name, tools=sorted(agent.tools_by_name))
            for name, agent in sorted(state.agents.items())
        ]
    )

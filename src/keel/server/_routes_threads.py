"""Threads and users' data: list a tenant's threads, read one, delete one, and delete
everything of a user.

The store keeps runs, not a table of threads: a tenant's threads are found through its runs,
newest first, each thread listed once, on the page of its newest run.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from keel.errors import UsageError
from keel.ports import RunQuery
from keel.server._auth import Principal, require
from keel.server._errors import ApiError
from keel.server._models_more import Deleted, ThreadList, ThreadSummary, ThreadView
from keel.server._models_runs import THREAD_PATTERN
from keel.server._openapi import errors
from keel.server._routes_runs import CURSOR_PATTERN
from keel.server._state import ServerState, request_state
from keel.server._tenancy import store_thread
from keel.server._views import run_summary

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["threads"])
State = Annotated[ServerState, Depends(request_state)]
Thread = Annotated[str, Path(pattern=THREAD_PATTERN, description="A thread's name.")]
User = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")]
Cursor = Annotated[str | None, Query(pattern=CURSOR_PATTERN)]
# How many runs one page of threads reads at most, so that a tenant with long threads
# still gets an answer quickly (a short page then, with a cursor to go on).
_SCAN = 1000


def _bad_cursor() -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        "cursor: not a page cursor; pass the next_cursor of the previous page",
        field="cursor",
    )


@router.get("/threads", response_model=ThreadList, summary="List threads", responses=errors())
async def list_threads(
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> ThreadList:
    """The caller's threads, the most recently started first, each with its newest run."""
    store = state.runtime.store
    found: list[ThreadSummary] = []
    seen: set[str] = set()
    before = cursor
    scanned = 0
    exhausted = False
    while len(found) < limit and scanned < _SCAN:
        try:
            page = await state.runtime.query_runs(
                RunQuery(tenant=principal.tenant), limit=100, before=before
            )
        except UsageError:
            raise _bad_cursor() from None
        leftover = False
        for index, record in enumerate(page.runs):
            scanned += 1
            before = record.cursor
            if record.thread_id in seen:
                continue
            seen.add(record.thread_id)
            # Listed on the page of its newest run only: a thread whose newest run is newer
            # than this one was listed before.
            newest = await store.list_runs(
                RunQuery(thread=record.thread_id, tenant=principal.tenant), limit=1
            )
            if newest and newest[0].run_id == record.run_id:
                summary = run_summary(principal, record)
                found.append(ThreadSummary(thread=summary.thread, latest_run=summary))
                if len(found) == limit:
                    leftover = index < len(page.runs) - 1
                    break
        if page.next is None and not leftover:
            exhausted = True
            break
    return ThreadList(threads=found, next_cursor=None if exhausted else before)


@router.get(
    "/threads/{thread}", response_model=ThreadView, summary="Read a thread", responses=errors(404)
)
async def get_thread(
    thread: Thread,
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> ThreadView:
    """The thread's runs, newest first, and the run that holds it now (if one does)."""
    thread_id = store_thread(principal, thread)
    query = RunQuery(thread=thread_id, tenant=principal.tenant)
    try:
        page = await state.runtime.query_runs(query, limit=limit, before=cursor)
    except UsageError:
        raise _bad_cursor() from None
    if not page.runs and cursor is None:
        raise ApiError(404, "thread_not_found", f"there is no thread {thread}", field="thread")
    active = await state.runtime.store.active_run(thread_id)
    return ThreadView(
        thread=thread,
        active_run_id=None if active is None else active.run_id,
        runs=[run_summary(principal, r) for r in page.runs],
        next_cursor=page.next,
    )


@router.delete(
    "/threads/{thread}",
    response_model=Deleted,
    summary="Delete a thread",
    responses=errors(404, 409),
)
async def delete_thread(
    thread: Thread,
    state: State,
    principal: Annotated[Principal, Depends(require("run"))],
) -> Deleted:
    """Delete the thread's conversation and all its runs (409 while one is being driven:
    cancel it first)."""
    thread_id = store_thread(principal, thread)
    mine = await state.runtime.store.list_runs(
        RunQuery(thread=thread_id, tenant=principal.tenant), limit=1
    )
    if not mine:
        raise ApiError(404, "thread_not_found", f"there is no thread {thread}", field="thread")
    return Deleted(deleted_runs=await state.runtime.delete_thread(thread_id))


@router.delete(
    "/users/{user}/data",
    response_model=Deleted,
    summary="Delete a user's data",
    responses=errors(409),
)
async def delete_user_data(
    user: User,
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
) -> Deleted:
    """Delete every run of ``user`` in the caller's tenant, with their events, messages and
    feedback. A key may delete its own user's data; another user's needs ``admin``. 409
    while one of the runs is being driven (cancel it first)."""
    if user != principal.user and not principal.allows("admin"):
        raise ApiError(
            403,
            "missing_scope",
            "deleting another user's data needs a key with the 'admin' scope",
        )
    deleted = await state.runtime.delete_user_data(user, tenant=principal.tenant)
    return Deleted(deleted_runs=deleted)

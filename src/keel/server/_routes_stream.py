"""``GET /v1/runs/{run_id}/stream``: a run's events and text as Server-Sent Events.

- A journal event is a message (no ``event:`` field) whose ``id:`` is its place in the
  journal (``seq``) and whose data is the same JSON as ``/events`` gives. A client that lost
  its connection reconnects with ``Last-Event-ID`` (browsers do it by themselves) and gets
  every event after that one: no gap, no repeat.
- A piece of the model's text is an ``event: delta`` with no ``id:``, so it never moves the
  point a reconnection resumes from. Deltas are not journaled: those streamed while a client
  was away are not sent again (the event holding the whole answer is).
- ``event: end`` says the stream is over and why (the run's status); a client should close
  then instead of reconnecting.
- A comment line (``: keep-alive``) every ``heartbeat_s`` keeps proxies from closing an idle
  stream.

While the process drains, the stream ends without ``end``: the client reconnects, with its
``Last-Event-ID``, to another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from keel._runtime.stream import RunDelta, RunEvent
from keel.errors import RunNotFoundError
from keel.server._auth import Principal, require
from keel.server._errors import ApiError
from keel.server._openapi import errors
from keel.server._routes_runs import RunId
from keel.server._state import ServerState, request_state
from keel.server._tenancy import visible_run
from keel.server._views import event_view

__all__ = ["follow_run", "router"]

router = APIRouter(prefix="/v1", tags=["runs"])
_log = logging.getLogger("keel.server")
State = Annotated[ServerState, Depends(request_state)]
_END = object()
_BUFFERED = 256


async def follow_run(
    state: ServerState,
    run_id: str,
    *,
    after: int,
    until: Literal["stopped", "finished"],
    deltas: bool,
) -> AsyncIterator[RunEvent | RunDelta | None]:
    """The run's events and deltas after ``after``, and ``None`` every ``heartbeat_s`` of
    silence; ends when the run stops (or finishes) or the process drains."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=_BUFFERED)

    async def pump() -> None:
        try:
            async for item in state.runtime.events(run_id, after=after, deltas=deltas, until=until):
                await queue.put(item)
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which decides
            await queue.put(exc)
        else:
            await queue.put(_END)

    pumping = asyncio.create_task(pump(), name=f"keel-follow-{run_id}")
    drained = asyncio.ensure_future(state.draining.wait())
    try:
        while True:
            getting = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getting, drained},
                timeout=state.settings.heartbeat_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if getting not in done:
                getting.cancel()
                if drained in done:
                    return
                yield None
                continue
            item = getting.result()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        drained.cancel()
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pumping


def _last_event_id(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        seq = int(value.strip())
    except ValueError:
        seq = -1
    if seq < 0:
        raise ApiError(
            422,
            "invalid_request",
            "Last-Event-ID: must be the id of the last event received (a sequence number)",
            field="Last-Event-ID",
        )
    return seq


@router.get(
    "/runs/{run_id}/stream",
    summary="Follow a run (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "The run's events (id = seq), deltas and an end event.",
        },
        **errors(404),
    },
)
async def stream_run(
    run_id: RunId,
    *,
    state: State,
    principal: Annotated[Principal, Depends(require("read"))],
    after: Annotated[int, Query(ge=0, le=2**62, description="Events after this seq.")] = 0,
    until: Annotated[
        Literal["stopped", "finished"],
        Query(description="End when the run stops (pauses too), or only when it ends."),
    ] = "stopped",
    deltas: Annotated[bool, Query(description="Also send the model's text as it streams.")] = (
        True
    ),
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=32, include_in_schema=False)
    ] = None,
) -> StreamingResponse:
    """The run's journal events as they become durable, the model's text as it streams, and
    a final ``end`` event. Reconnect with ``Last-Event-ID`` to resume without gap or
    repeat."""
    await visible_run(state, principal, run_id)
    resumed = _last_event_id(last_event_id)
    start = after if resumed is None else resumed

    async def body() -> AsyncIterator[str]:
        try:
            async for item in follow_run(state, run_id, after=start, until=until, deltas=deltas):
                if item is None:
                    yield ": keep-alive\n\n"
                elif isinstance(item, RunEvent):
                    data = event_view(principal, item.seq, item.event).model_dump_json()
                    yield f"id: {item.seq}\ndata: {data}\n\n"
                else:
                    text = json.dumps({"step": item.step, "text": item.text})
                    yield f"event: delta\ndata: {text}\n\n"
        except RunNotFoundError:  # the run was deleted while followed
            yield f"event: end\ndata: {json.dumps({'status': 'gone'})}\n\n"
            return
        except Exception as exc:  # noqa: BLE001 - a store outage: the client comes back later
            # No end event: the client reconnects with its Last-Event-ID and loses nothing.
            _log.warning("following run %s stopped: %s", run_id, type(exc).__name__)
            return
        if state.draining.is_set():
            return  # no end: the client resumes elsewhere with its Last-Event-ID
        status: str = "gone"
        with contextlib.suppress(RunNotFoundError):
            status = (await state.runtime.get_run(run_id)).status
        yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

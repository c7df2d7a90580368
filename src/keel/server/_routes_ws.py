"""``/v1/ws``: an interactive session on a WebSocket.

The client sends JSON messages (:mod:`keel.server._models_ws`): ``message`` starts a run on a
thread, ``approve`` and ``reject`` decide on a pending call, ``cancel`` ends a run, ``follow``
follows one. The server answers each (``run``, ``decided``, ``cancelled``, ``following``, or
``error``, with the client's ``id`` as ``ref``) and sends what the runs it follows do:
``event`` (a journal event as ``event``, with its ``seq``), ``delta`` (the model's text as it
streams) and ``stopped`` (the run stopped: finished, or waiting for a person; after a
decision it is followed again from where it stopped).

Authentication: the handshake's ``Authorization: Bearer`` or ``X-API-Key`` header, or, for
clients that cannot set headers, a first message ``{"type": "auth", "api_key": ...}``. A
refused key closes the socket with code 4401 (4403 for a client off loopback before any key
exists). While the process drains, sockets are closed with 1012 (service restart).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from keel._runtime.stream import RunEvent
from keel.errors import ConfigurationError, KeelError, RunNotFoundError, ThreadBusyError
from keel.server._auth import Principal, authenticate, check_scope, presented_key
from keel.server._errors import ApiError
from keel.server._keys import Scope
from keel.server._models_more import Approve, Edit, Reject
from keel.server._models_ws import WsAuth, WsCancel, WsDecision, WsFollow, WsStart, client_message
from keel.server._routes_decisions import decide
from keel.server._routes_runs import check_queue_room, tightened_limits
from keel.server._routes_stream import follow_run
from keel.server._state import ServerState, server_state
from keel.server._tenancy import store_thread, visible_run
from keel.server._views import event_view, run_view

__all__ = ["router"]

router = APIRouter()
_AUTH_WAIT_S = 10.0
_SCOPES: dict[type[Any], Scope] = {
    WsStart: "run",
    WsDecision: "approve",
    WsCancel: "run",
    WsFollow: "read",
}


def _error(exc: ApiError, ref: str | None = None) -> dict[str, Any]:
    error = {"code": exc.code, "message": exc.message, "field": exc.field, **exc.extra}
    return {"type": "error", "ref": ref, "error": error}


def _invalid(exc: ValidationError) -> ApiError:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "message"
    message = "is required" if first.get("type") == "missing" else first.get("msg", "")
    if first.get("type") == "json_invalid":
        field, message = "message", "is not valid JSON"
    return ApiError(422, "invalid_request", f"{field}: {message}", field=field)


class Session:
    """One WebSocket's conversation: its caller, and the runs it follows."""

    def __init__(self, state: ServerState, principal: Principal, socket: WebSocket) -> None:
        self.state = state
        self.principal = principal
        self.socket = socket
        self._send_lock = asyncio.Lock()
        self._following: dict[str, asyncio.Task[None]] = {}
        self._seen: dict[str, int] = {}

    async def send(self, data: dict[str, Any]) -> None:
        """Send one message (one at a time: followers and answers share the socket)."""
        async with self._send_lock:
            await self.socket.send_json(data)

    async def serve(self) -> None:
        """Answer the client's messages until it goes away."""
        try:
            while True:
                text = await self.socket.receive_text()
                ref = None
                try:
                    message = client_message.validate_json(text)
                    ref = message.id
                    await self._handle(message)
                except ValidationError as exc:
                    await self.send(_error(_invalid(exc)))
                except ApiError as exc:
                    await self.send(_error(exc, ref))
                except ThreadBusyError as exc:
                    busy = ApiError(
                        409,
                        "thread_busy",
                        f"the thread is busy: run {exc.active_run_id} is {exc.status}",
                        field="thread",
                        extra={"active_run_id": exc.active_run_id},
                    )
                    await self.send(_error(busy, ref))
                except KeelError as exc:
                    await self.send(_error(ApiError(409, "conflict", exc.message), ref))
        finally:
            for task in self._following.values():
                task.cancel()
            await asyncio.gather(*self._following.values(), return_exceptions=True)

    async def _handle(self, message: Any) -> None:
        if isinstance(message, WsAuth):
            raise ApiError(409, "conflict", "this socket is authenticated already")
        check_scope(self.principal, _SCOPES[type(message)])
        if isinstance(message, WsStart):
            await self._start(message)
        elif isinstance(message, WsDecision):
            await self._decide(message)
        elif isinstance(message, WsCancel):
            await visible_run(self.state, self.principal, message.run_id)
            result = await self.state.runtime.cancel(
                message.run_id, reason=message.reason or "cancelled through the API"
            )
            record = await self.state.runtime.get_run(message.run_id)
            view = run_view(self.principal, record, result)
            await self.send({"type": "cancelled", "ref": message.id, "run": view.model_dump()})
        else:
            await visible_run(self.state, self.principal, message.run_id)
            await self.send({"type": "following", "ref": message.id, "run_id": message.run_id})
            self._follow(message.run_id, message.after)

    async def _start(self, message: WsStart) -> None:
        state, principal = self.state, self.principal
        agent = state.agent(message.agent)
        with state.intake.slot():
            await check_queue_room(state)
            try:
                run_id = await state.runtime.submit(
                    agent,
                    message.input,
                    thread=None
                    if message.thread is None
                    else store_thread(principal, message.thread),
                    limits=tightened_limits(agent, message),
                    tenant=principal.tenant,
                    user=principal.user,
                    roles=principal.roles,
                    if_busy=message.if_busy,
                )
            except ConfigurationError as exc:
                raise ApiError(503, "agent_unavailable", exc.message, field="agent") from None
        await self.send(
            {"type": "run", "ref": message.id, "run_id": run_id, "thread": message.thread}
        )
        self._follow(run_id, 0)

    async def _decide(self, message: WsDecision) -> None:
        decision: Approve | Edit | Reject
        if message.type == "reject":
            if message.reason is None:
                raise ApiError(422, "invalid_request", "reason: is required", field="reason")
            decision = Reject(call_id=message.call_id, reason=message.reason, by=message.by)
        elif message.arguments is not None:
            decision = Edit(call_id=message.call_id, arguments=message.arguments, by=message.by)
        else:
            decision = Approve(call_id=message.call_id, by=message.by)
        view = await decide(self.state, self.principal, message.run_id, decision)
        await self.send({"type": "decided", "ref": message.id, "run": view.model_dump()})
        self._follow(message.run_id, self._seen.get(message.run_id, 0))

    def _follow(self, run_id: str, after: int) -> None:
        """Follow ``run_id`` from after ``after`` until it stops (again)."""
        running = self._following.get(run_id)
        if running is not None and not running.done():
            return  # already followed; it goes on through the decision
        self._following[run_id] = asyncio.create_task(
            self._forward(run_id, after), name=f"keel-ws-{run_id}"
        )

    async def _forward(self, run_id: str, after: int) -> None:
        principal = self.principal
        try:
            async for item in follow_run(
                self.state, run_id, after=after, until="stopped", deltas=True
            ):
                if item is None:
                    continue  # the socket has its own pings
                if isinstance(item, RunEvent):
                    self._seen[run_id] = item.seq
                    event = event_view(principal, item.seq, item.event)
                    await self.send(
                        {"type": "event", "run_id": run_id, "seq": item.seq, "event": event.event}
                    )
                else:
                    await self.send(
                        {"type": "delta", "run_id": run_id, "step": item.step, "text": item.text}
                    )
            if self.state.draining.is_set():
                return
            record = await self.state.runtime.get_run(run_id)
            result = await self.state.runtime.result(run_id)
            view = run_view(principal, record, result)
            await self.send({"type": "stopped", "run_id": run_id, "run": view.model_dump()})
        except RunNotFoundError:
            with contextlib.suppress(Exception):
                await self.send({"type": "stopped", "run_id": run_id, "run": None})
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client went away; nothing to tell


async def _authenticated(state: ServerState, socket: WebSocket) -> Principal:
    """The caller: from the handshake's headers, else from a first ``auth`` message when
    keys exist (a header-less local client needs neither)."""
    if presented_key(socket) is not None or not await state.keys.any_keys():
        return await authenticate(state, socket)
    try:
        text = await asyncio.wait_for(socket.receive_text(), _AUTH_WAIT_S)
    except TimeoutError:
        raise ApiError(401, "missing_key", "send the API key first: {type: auth}") from None
    try:
        message = client_message.validate_json(text)
    except ValidationError as exc:
        raise ApiError(
            401, "missing_key", f"send the API key first ({_invalid(exc).message})"
        ) from None
    if not isinstance(message, WsAuth):
        raise ApiError(
            401, "missing_key", 'send the API key first: {"type": "auth", "api_key": ...}'
        )
    key = await state.keys.verify(message.api_key)
    if key is None:
        raise ApiError(401, "invalid_key", "the API key is unknown, malformed or revoked")
    return Principal(
        tenant=key.tenant,
        user=key.user,
        scopes=frozenset(key.scopes),
        roles=key.roles,
        key_id=key.key_id,
    )


@router.websocket("/v1/ws")
async def websocket_session(socket: WebSocket) -> None:
    """An interactive session; see the module docstring."""
    state = server_state(socket)
    await socket.accept()
    try:
        principal = await _authenticated(state, socket)
    except ApiError as exc:
        with contextlib.suppress(Exception):
            await socket.send_json(_error(exc))
            await socket.close(code=4403 if exc.status == 403 else 4401)
        return
    except WebSocketDisconnect:
        return
    session = Session(state, principal, socket)
    await session.send({"type": "ready", "user": principal.user})

    async def close_on_drain() -> None:
        await state.draining.wait()
        with contextlib.suppress(Exception):
            await socket.close(code=1012)

    closer = asyncio.create_task(close_on_drain())
    try:
        await session.serve()
    except WebSocketDisconnect:
        pass
    except RuntimeError:
        if not state.draining.is_set():
            raise
        # The drain closed the socket under a receive: that is how the session ends.
    finally:
        closer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closer

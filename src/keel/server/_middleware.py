"""What every request goes through before a route: the body size limit, and the drain.

Both are plain ASGI middleware, so that they see a request before FastAPI reads its body.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.server._errors import error_body
from keel.server._state import ServerState

__all__ = ["BodyLimit", "RefuseWhileDraining"]

# What a load balancer asks while the process drains: alive, and not ready.
_ANSWERED_WHILE_DRAINING = frozenset({"/healthz", "/readyz", "/metrics"})


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        error_body(
            "too_large",
            f"the request body is larger than {limit} bytes (max_body_bytes); send less",
            "body",
        ),
        status_code=413,
        headers={"Connection": "close"},
    )


class BodyLimit:
    """413 for a body larger than ``limit`` bytes: at once when ``Content-Length`` says so,
    else as soon as the bytes read pass it (a chunked body is never read whole first)."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    await _too_large(self.limit)(scope, receive, send)
                    return
        seen = 0
        started = False
        refused = False

        async def counting() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > self.limit and not started:
                    # Answer now, and tell the app the client left: it stops reading, and
                    # whatever it answers then is dropped.
                    refused = True
                    await _too_large(self.limit)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting, sending)


class RefuseWhileDraining:
    """While the process drains, new requests get 503 with ``Retry-After`` (another process
    takes them) and new WebSockets are refused; health and metrics still answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            state: ServerState | None = getattr(scope["app"].state, "keel", None)
            draining = state is not None and state.draining.is_set()
            if draining and scope["path"] not in _ANSWERED_WHILE_DRAINING:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1012})
                    return
                response = JSONResponse(
                    error_body(
                        "draining",
                        "this server is shutting down and takes no new requests; retry, "
                        "another process will answer",
                    ),
                    status_code=503,
                    headers={
                        "Retry-After": str(state.settings.retry_after_s if state else 1),
                        "Connection": "close",
                    },
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

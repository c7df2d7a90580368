"""Errors as the API answers them: always JSON, always saying what was wrong and how to fix it.

Every error body reads ``{"error": {"code": ..., "message": ..., "field": ...}}``: ``code`` is
stable (clients branch on it), ``message`` is a sentence for people, ``field`` names the part
of the request at fault (``input``, ``limits.max_steps``, ``cursor``; ``null`` when none).
Validation errors keep FastAPI's status, 422, and list every problem in ``details``.

Nothing a client sends produces a 500: input is validated before it reaches the runtime, and
the runtime's own refusals are mapped to 4xx here. A 500 means a bug: :class:`CatchAll` logs
it (with secrets masked) under an id that the response gives, and never shows a traceback.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel._redact import redact
from keel.errors import (
    RunLeasedError,
    RunNotFoundError,
    StoreError,
    ThreadBusyError,
    UsageError,
)

__all__ = ["ApiError", "CatchAll", "error_body", "install_error_handlers"]

_log = logging.getLogger("keel.server")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer other than success: its status, stable code, message, and the field at
    fault (if one is)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> JSONResponse:
        """This error as a JSON response."""
        body = error_body(self.code, self.message, self.field)
        body["error"].update(self.extra)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error."""
    return {"error": {"code": code, "message": message, "field": field}}


def _field(loc: Sequence[int | str]) -> str:
    """``("body", "limits", "max_steps")`` as ``limits.max_steps``; a whole body as ``body``.
    A parameter is named alone (with its index in a list): what follows it in ``loc`` names
    the union branch that failed (``since.float``), which means nothing to a client."""
    if len(loc) > 1 and loc[0] in ("query", "path", "header", "cookie"):
        index = [str(p) for p in loc[2:3] if isinstance(p, int)]
        return ".".join([str(loc[1]), *index])
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        field = _field(error.get("loc", ()))
        message = str(error.get("msg", "is not valid"))
        if error.get("type") == "json_invalid":
            message = "the body is not valid JSON: " + str(error.get("ctx", {}).get("error", ""))
            field = "body"
        elif error.get("type") == "missing":
            message = "is required"
        problems.append({"field": field, "message": message})
    first = problems[0] if problems else {"field": "body", "message": "is not valid"}
    # A value that fits none of a parameter's forms fails each of them: say them all.
    said = [p["message"] for p in problems if p["field"] == first["field"]]
    body = error_body("invalid_request", f"{first['field']}: {'; or '.join(said)}", first["field"])
    body["error"]["details"] = problems
    return JSONResponse(body, status_code=422)


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot decode (not UTF-8): the same 422 as for any
        # body that is not JSON, so that clients meet one status for bad input.
        return JSONResponse(
            error_body("invalid_request", "body: the body is not valid UTF-8 JSON", "body"),
            status_code=422,
        )
    if exc.status_code == 404:
        message = f"there is no {request.url.path}; see /docs for the API's paths"
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        message = (
            f"{request.method} is not allowed on {request.url.path}; use "
            f"{', '.join(allowed)} (see /docs)"
        )
        headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
        return JSONResponse(error_body(code, message), status_code=405, headers=headers)
    else:
        message = str(exc.detail)
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path (Starlette names only the first
    route's, and a path may have several: GET and POST /v1/runs)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def _api(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


def _not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RunNotFoundError)
    return JSONResponse(error_body("run_not_found", "there is no such run"), status_code=404)


def _busy(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ThreadBusyError)
    # The thread's name is the client's, and the run holding it is the tenant's own.
    body = error_body(
        "thread_busy",
        f"the thread is busy: run {exc.active_run_id} is {exc.status}; wait for it, send with "
        "if_busy 'queue' to wait behind it, or 'interrupt' to cancel it",
        "thread",
    )
    body["error"]["active_run_id"] = exc.active_run_id
    return JSONResponse(body, status_code=409)


def _leased(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RunLeasedError)
    return JSONResponse(
        error_body(
            "run_busy",
            "a run concerned is being driven right now; cancel it or wait until it stops, then "
            "try again",
        ),
        status_code=409,
    )


def _usage(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UsageError)
    return JSONResponse(error_body("conflict", exc.message), status_code=409)


def _store(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StoreError)
    _log.warning("the store failed for %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        error_body("store_unavailable", "the store did not answer; try again shortly"),
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a JSON error body (see the module docstring)."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(ApiError, _api)
    app.add_exception_handler(RunNotFoundError, _not_found)
    app.add_exception_handler(ThreadBusyError, _busy)
    app.add_exception_handler(RunLeasedError, _leased)
    app.add_exception_handler(UsageError, _usage)
    app.add_exception_handler(StoreError, _store)


class CatchAll:
    """The last line: an exception nothing else handled becomes a logged JSON 500 (with an
    error id), not a traceback; one raised after the response started closes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)  # a failed start must fail the server
            return
        if scope["type"] != "http":
            await self._guarded(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # noqa: BLE001 - the point: no exception escapes as a 500 page
            error_id = uuid.uuid4().hex[:12]
            _log.error(
                "unexpected error %s handling %s %s: %s",
                error_id,
                scope.get("method"),
                scope.get("path"),
                _described(exc),
            )
            if started:
                return  # the client sees the response end early; nothing more can be sent
            response = JSONResponse(
                error_body(
                    "internal",
                    f"the server failed to handle this request; it was logged as error {error_id}",
                ),
                status_code=500,
            )
            await response(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - a broken socket handler must not crash
            _log.error(
                "unexpected error in %s %s: %s", scope["type"], scope.get("path"), _described(exc)
            )


def _described(exc: BaseException) -> str:
    """An exception for the log: its message with passwords masked, and where it came from
    (the frames' code lines, never their variables)."""
    where = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    return redact(f"{type(exc).__name__}: {exc}\n{where}")

"""Errors of the OpenAI-compatible endpoint, in OpenAI's shape, whatever raised them.

Every error body is ``{"error": {"message", "type", "param", "code"}}``, so OpenAI clients
raise their usual exceptions (``BadRequestError`` for a 400, ``NotFoundError`` for a 404...).
:class:`OpenAIRoute` renders them for the endpoint's routes only, including a request that
fails validation and an ``HTTPException`` from the server's authentication dependency; the
server's other routes keep their own error format.

Responses about a run carry ``x-should-retry: false``: the openai package retries 409s and
5xx by default, and each retry would start another run (another model call, another tool
call) for the same message.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from keel._runtime.result import RunResult
from keel.server._openai_models import ErrorBody, ErrorResponse

__all__ = [
    "NO_RETRY",
    "OpenAIError",
    "OpenAIRoute",
    "error_event",
    "invalid_request",
    "run_not_answered",
]

NO_RETRY = {"x-should-retry": "false"}

# pydantic names the member of a union that failed (``str``, ``list[str]``) in an error's
# location; such names are not request fields.
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none"})

# A run paused because its model failed is the model's matter, not a conflict: clients and
# monitoring read 503 and 429 as such.
_PAUSED_STATUS = {"model_unavailable": 503, "rate_limited": 429}

_HTTP_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class OpenAIError(Exception):
    """An error the endpoint answers with: an HTTP status and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(message=message, type=kind, param=param, code=code)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """The error as an HTTP response."""
        return JSONResponse(
            ErrorResponse(error=self.body).model_dump(),
            status_code=self.status,
            headers=self.headers,
        )


def invalid_request(message: str, *, param: str | None, code: str | None = None) -> OpenAIError:
    """A 400 about the request: ``param`` names the field at fault."""
    return OpenAIError(400, message, param=param, code=code)


def _param(location: Sequence[int | str]) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``"messages[0].role"``."""
    path = ""
    for part in location[1:] if location and location[0] == "body" else location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in _TYPE_TAGS or not part.isidentifier():
            break  # a union member's name: the field before it is the one at fault
        else:
            path += f".{part}" if path else part
    return path or None


def _from_validation(error: RequestValidationError) -> OpenAIError:
    found = list(error.errors())
    first = found[0] if found else {}
    location = tuple(first.get("loc", ()))
    param = _param(location)
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif kind == "missing":
        message = f"Missing required parameter: '{param}'."
    elif kind == "json_invalid":
        message = "The body of the request is not valid JSON."
        param = None
    elif param is None:
        message = "The body of the request must be a JSON object."
    else:
        message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}."
    return invalid_request(message, param=param, code="invalid_value")


def _from_http(error: HTTPException) -> OpenAIError:
    status = error.status_code
    detail = error.detail if isinstance(error.detail, str) else None
    message = detail or HTTPStatus(status).phrase
    kind = _HTTP_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return OpenAIError(status, message, kind=kind, headers=error.headers)


class OpenAIRoute(APIRoute):
    """A route whose errors, even validation and authentication errors, are OpenAI's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, answering errors as :class:`OpenAIError` bodies."""
        handle = super().get_route_handler()

        async def handle_in_openai_shape(request: Request) -> Response:
            try:
                return await handle(request)
            except OpenAIError as error:
                return error.response()
            except RequestValidationError as error:
                return _from_validation(error).response()
            except HTTPException as error:
                return _from_http(error).response()

        return handle_in_openai_shape


def run_not_answered(result: RunResult[Any], *, thread: str | None) -> OpenAIError:
    """The error for a run that stopped without an answer.

    A run that waits for a person or was paused by a limit has not answered, and may still
    (409: decide or resume it, and the answer lands in its thread); one paused because its
    model is unavailable or rate limited is a 503 or a 429; a cancelled one never will answer
    (409); one refused by a check is the request's matter (422); one that failed is the
    model's or a tool's (502).
    """
    run_id = result.run_id
    headers = {"x-keel-run-id": run_id, **NO_RETRY}
    why = "" if result.reason is None else f": {result.reason.message}"
    where = f" of thread '{thread}'" if thread else ""
    if result.status == "awaiting_approval":
        calls = ", ".join(f"{p.call.name} ({p.kind})" for p in result.pending) or "a call"
        message = (
            f"Run {run_id}{where} has not answered: it waits for a person to decide on "
            f"{calls}. Once decided, the run goes on and its answer is kept in its thread."
        )
        return OpenAIError(
            409, message, kind="run_not_completed", code="awaiting_approval", headers=headers
        )
    if result.status == "paused":
        message = (
            f"Run {run_id}{where} has not answered: it was paused{why}. Once resumed, its "
            "answer is kept in its thread."
        )
        code = result.reason.code if result.reason is not None else "paused"
        status = _PAUSED_STATUS.get(code, 409)
        return OpenAIError(
            status,
            message,
            kind="run_not_completed",
            code=code if status != 409 else "paused",
            headers=headers,
        )
    if result.status == "cancelled":
        message = f"Run {run_id}{where} was cancelled before it answered{why}."
        return OpenAIError(
            409, message, kind="run_not_completed", code="cancelled", headers=headers
        )
    code = result.reason.code if result.reason is not None else result.status
    if code.startswith("check."):
        message = f"Run {run_id}{where} was refused{why}."
        return OpenAIError(422, message, kind="run_refused", code=code, headers=headers)
    message = f"Run {run_id}{where} ended {result.status} without an answer{why}."
    return OpenAIError(502, message, kind="run_failed", code=code, headers=headers)


def error_event(error: OpenAIError) -> str:
    """The error as a server-sent event, for a stream whose status line was already sent."""
    return f"data: {ErrorResponse(error=error.body).model_dump_json()}\n\n"

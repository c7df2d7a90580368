"""What the OpenAPI document says about error answers, so that clients (and Schemathesis)
know every status a route may answer with."""

from __future__ import annotations

from typing import Any

from keel.server._models_runs import ErrorBody

__all__ = ["errors"]

_WHY = {
    401: "No API key, or an unknown, malformed or revoked one.",
    403: "The key lacks the route's scope (or, before any key exists, the client is not on "
    "loopback).",
    404: "No such run, thread, agent or call (another tenant's answer the same).",
    409: "The request conflicts with where the run or thread stands.",
    413: "The body is larger than the server's max_body_bytes.",
    422: "The request is not valid: the error names the field and the problem.",
    429: "The server is at capacity: retry after Retry-After seconds.",
    503: "The server is draining, or the store or a model is unavailable.",
}

_COMMON = (401, 403, 413, 422, 429, 503)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route: the common ones and ``statuses``."""
    return {
        status: {"model": ErrorBody, "description": _WHY[status]}
        for status in sorted({*_COMMON, *statuses})
    }

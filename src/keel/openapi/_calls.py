"""Calling one OpenAPI operation over HTTP (httpx, async) with the model's arguments.

Settings headers (authentication) are added here, after validation, and never come from the
model. Whatever the API sends back is searched for them before the model or the journal
sees it: a server that echoes a token gets it masked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from keel._tools import ToolError
from keel.openapi._operations import Operation

__all__ = ["Masker", "make_caller"]

_MASK = "[REDACTED]"
# As the runtime's own masking (decision 0025): shorter values would mask ordinary words.
_SHORTEST_SECRET = 8
# Settings headers that carry no secret, so masking their values would only garble results.
_PLAIN = frozenset(
    {"accept", "accept-encoding", "accept-language", "cache-control", "content-type", "user-agent"}
)


class Masker:
    """Replaces the values of settings headers (and a token after ``Bearer``) in text."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        secrets: set[str] = set()
        for name, value in headers.items():
            if name.lower() in _PLAIN:
                continue
            secrets.add(value)
            _, _, token = value.partition(" ")
            secrets.add(token)
        # Longest first, so that a token inside a full value is not masked half.
        self._secrets = sorted((s for s in secrets if len(s) >= _SHORTEST_SECRET), key=len)[::-1]

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        return text


def make_caller(
    operation: Operation,
    *,
    base_url: str,
    headers: Mapping[str, str],
    client: httpx.AsyncClient | None,
    timeout_s: float,
    max_error_chars: int,
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The async function a tool runs: one request per call."""
    mask = Masker(headers)
    label = f"{operation.method.upper()} {operation.path}"

    async def call_operation(**arguments: Any) -> Any:
        request = _request(operation, base_url, headers, arguments)
        try:
            if client is not None:
                response = await client.request(**request, timeout=timeout_s)
            else:
                async with httpx.AsyncClient(timeout=timeout_s) as own:
                    response = await own.request(**request)
        except httpx.HTTPError as exc:
            doubt = "" if operation.reads_only else "; it may or may not have taken effect"
            raise ToolError(mask(f"{label} failed: {type(exc).__name__} ({exc}){doubt}")) from None
        text = mask(response.text)
        if not response.is_success:
            excerpt = " ".join(text.split())
            if len(excerpt) > max_error_chars:
                excerpt = excerpt[:max_error_chars] + "..."
            raise ToolError(
                f"{label} answered HTTP {response.status_code} {response.reason_phrase}"
                + (f": {excerpt}" if excerpt else "")
            )
        if not text:
            return f"HTTP {response.status_code} {response.reason_phrase}"
        if "json" in response.headers.get("content-type", ""):
            try:
                return json.loads(text)
            except ValueError:
                return text
        return text

    call_operation.__name__ = operation.operation_id
    call_operation.__qualname__ = operation.operation_id
    return call_operation


def _request(
    operation: Operation, base_url: str, headers: Mapping[str, str], arguments: Mapping[str, Any]
) -> dict[str, Any]:
    path = operation.path
    params: list[tuple[str, str]] = []
    sent: dict[str, str] = {}
    request: dict[str, Any] = {"method": operation.method.upper()}
    for argument in operation.arguments:
        if argument.name not in arguments:
            continue
        value = arguments[argument.name]
        if argument.location == "path":
            # Quoted whole: a model's "../admin" stays one segment of the path.
            path = path.replace("{" + argument.wire_name + "}", quote(_text(value), safe=""))
        elif argument.location == "query":
            values = value if isinstance(value, list) else [value]
            params.extend((argument.wire_name, _text(item)) for item in values)
        elif argument.location == "header":
            sent[argument.wire_name] = _text(value)
        else:
            request["json"] = value
    sent.update(headers)  # settings last: the model cannot replace them
    request.update(url=base_url + path, params=params, headers=sent)
    return request


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)

"""The shared HTTP helpers: Retry-After parsing, the SSE reader and error-body mapping."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx
import pytest

from keel.models._http import (
    ServerSentEvent,
    error_from_response,
    iter_sse,
    parse_retry_after,
)

NOW = parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:00:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "nan"}, None),
        ({"retry-after-ms": "x", "Retry-After": "2"}, 2.0),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers), now=NOW) == expected


def test_retry_after_http_date_defaults_to_the_real_clock() -> None:
    past = parse_retry_after(httpx.Headers({"Retry-After": "Sat, 01 Jan 2000 00:00:00 GMT"}))
    future = parse_retry_after(httpx.Headers({"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"}))
    assert past == 0.0
    assert future is not None
    assert future > 0


async def read_events(body: bytes) -> list[ServerSentEvent]:
    response = httpx.Response(200, content=body)
    return [event async for event in iter_sse(response)]


async def test_sse_reader_follows_the_event_stream_rules() -> None:
    body = (
        b": a comment\n"
        b"data: first\n\n"
        b"event: message_start\r\n"
        b'data: {"a":\r\n'
        b"data:1}\r\n\r\n"
        b"id: 7\nretry: 100\n\n"  # no data: nothing is dispatched
        b"data\n\n"
        b"data: cut off, never terminated"
    )
    assert await read_events(body) == [
        ServerSentEvent(event="message", data="first"),
        ServerSentEvent(event="message_start", data='{"a":\n1}'),
        ServerSentEvent(event="message", data=""),
    ]


def response(status: int, body: str | bytes, **headers: str) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, content=content, headers=headers)


@pytest.mark.parametrize(
    ("body", "quoted"),
    [
        ('{"object": "error", "message": "bad top_p", "type": "BadRequestError"}', "bad top_p"),
        ('{"error": "model \\"llama9\\" not found"}', 'model "llama9" not found'),
        ("<html><body>502 Bad Gateway</body></html>", "502 Bad Gateway"),
        ("", "(empty body)"),
    ],
)
def test_error_message_quotes_each_server_style(body: str, quoted: str) -> None:
    error = error_from_response(response(400, body), provider="vllm", model="m")
    assert quoted in error.message
    assert error.message.startswith("vllm returned HTTP 400 for model 'm'")


def test_vllm_style_context_overflow_is_recognised() -> None:
    body = '{"object": "error", "message": "This model\'s maximum context length is 4096"}'
    error = error_from_response(response(400, body), provider="vllm", model="m")
    assert error.code == "model_context_window"
    assert error.retryable is False


def test_proxy_gateway_error_is_retryable() -> None:
    error = error_from_response(response(502, "bad gateway"), provider="openai", model="m")
    assert (error.retryable, error.code) == (True, "model_server_error")


def test_secrets_are_redacted_from_message_and_body() -> None:
    body = '{"error": {"message": "key sk-live-123456 is revoked"}}'
    error = error_from_response(
        response(401, body), provider="openai", model="m", secrets=("sk-live-123456",)
    )
    assert "sk-live-123456" not in error.message
    assert "sk-live-123456" not in (error.body or "")
    assert "key [REDACTED] is revoked" in error.message

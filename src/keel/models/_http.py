"""What the HTTP providers share: error mapping, an SSE reader and client ownership.

Every provider failure leaves here as a :class:`keel.errors.ModelError` subclass carrying retry
semantics (``retryable``, ``retry_after``, a stable ``code``), so resilience wrappers never parse
strings. Messages quote the provider's own error text but never request headers, and any API key
that still finds its way into a message is replaced by ``[REDACTED]``.
"""

from __future__ import annotations

import abc
import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from keel.errors import (
    ConfigurationError,
    ModelConnectionError,
    ModelHTTPError,
    ModelResponseError,
    ModelTimeoutError,
)
from keel.ports import Model

__all__ = [
    "HTTPModel",
    "ServerSentEvent",
    "error_from_response",
    "iter_sse",
    "parse_json_object",
    "parse_retry_after",
    "redact",
    "translate_transport_errors",
]

_DETAIL_LIMIT = 500
_CONTEXT_WINDOW_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "prompt is too long",
    "context window",
)
_CONTENT_POLICY_CODES = ("content_filter", "content_policy_violation")


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``[REDACTED]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


def parse_retry_after(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP-date).

    ``now`` (seconds since the epoch) is only used for HTTP-dates; it defaults to the real time.
    Unparseable or negative values give ``None`` rather than a guess.
    """
    millis = _finite_non_negative(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _finite_non_negative(raw)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _finite_non_negative(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _error_fields(body: str) -> tuple[str, str]:
    """The provider's error message and error code/type, from any of the common body shapes."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip(), ""
    if not isinstance(data, dict):
        return body.strip(), ""
    error = data.get("error")
    if isinstance(error, dict):
        # OpenAI: {"error": {"message", "type", "code"}}; Anthropic: {"error": {"type", "message"}}
        code = error.get("code") or error.get("type") or ""
        return str(error.get("message") or body.strip()), str(code)
    if isinstance(error, str):  # Ollama and llama.cpp style: {"error": "..."}
        return error, ""
    # vLLM style: {"object": "error", "message": ..., "type": ..., "code": ...}
    code = data.get("code") or data.get("type") or ""
    return str(data.get("message") or body.strip()), str(code)


def error_from_response(
    response: httpx.Response,
    *,
    provider: str,
    model: str,
    secrets: Sequence[str] = (),
    now: float | None = None,
) -> ModelHTTPError:
    """Turn an error response (whose body has been read) into a :class:`ModelHTTPError`.

    Context-window overflows get ``code == "model_context_window"`` and content-policy refusals
    ``code == "model_content_policy"``; both are not retryable, since the same request would
    fail the same way.
    """
    status = response.status_code
    body = redact(response.text, secrets)
    detail, provider_code = _error_fields(body)
    detail = " ".join(detail.split())[:_DETAIL_LIMIT] or "(empty body)"
    retry_after = parse_retry_after(response.headers, now=now)
    haystack = f"{provider_code} {detail}".lower()
    kind = ""
    if any(marker in haystack for marker in _CONTEXT_WINDOW_MARKERS):
        kind = "model_context_window"
        hint = "the input is larger than the model's context window; shorten the history"
    elif provider_code in _CONTENT_POLICY_CODES:
        kind = "model_content_policy"
        hint = "the provider's content policy blocked this request; resending it will not help"
    else:
        hint = _status_hint(status, retry_after)
    error = ModelHTTPError(
        f"{provider} returned HTTP {status} for model '{model}': {detail} ({hint})",
        status=status,
        model=model,
        retry_after=retry_after,
        body=body[:4000],
    )
    if kind:
        error.code = kind
        error.retryable = False
    return error


def _status_hint(status: int, retry_after: float | None) -> str:
    if status == 401:
        return "check the API key given to the model"
    if status == 403:
        return "the API key is not allowed to use this model or endpoint"
    if status == 404:
        return "check the model name and base_url"
    if status == 429:
        wait = f"retry after {retry_after:g}s" if retry_after is not None else "slow down"
        return f"rate limited; {wait}"
    if status >= 500:
        return "the provider failed; the request can be retried"
    return "the provider rejected the request; check the messages, tools and settings"


def parse_json_object(text: str, *, provider: str, model: str, what: str) -> dict[str, Any]:
    """Parse a JSON object from a provider, or raise :class:`ModelResponseError`."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        snippet = " ".join(text.split())[:200]
        raise ModelResponseError(
            f"{provider} sent {what} for model '{model}' that is not a JSON object: {snippet!r}; "
            "check that base_url points at an API of this kind",
            model=model,
        )
    return data


def _display_url(url: str) -> str:
    """The URL without credentials or query string, safe to put in a message."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


@contextmanager
def translate_transport_errors(
    *, provider: str, model: str, url: str, timeout_s: float, secrets: Sequence[str] = ()
) -> Iterator[None]:
    """Re-raise httpx timeouts and transport failures as Keel model errors."""
    where = _display_url(url)
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ModelTimeoutError(
            f"{provider} did not answer model '{model}' at {where} within {timeout_s:g}s "
            f"({type(exc).__name__}); raise timeout_s or check the server's load",
            model=model,
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise ConfigurationError(
            f"cannot call {provider} at {where}: {redact(str(exc), secrets)}; "
            "base_url must start with http:// or https://"
        ) from exc
    except httpx.ConnectError as exc:
        raise ModelConnectionError(
            f"could not connect to {provider} at {where} for model '{model}': "
            f"{redact(str(exc), secrets)}; check that the server is running and base_url is right",
            model=model,
        ) from exc
    except httpx.TransportError as exc:
        raise ModelConnectionError(
            f"the connection to {provider} at {where} broke before the answer for model "
            f"'{model}' was complete ({type(exc).__name__}: {redact(str(exc), secrets)}); "
            "the request can be retried",
            model=model,
        ) from exc
    except httpx.DecodingError as exc:
        raise ModelResponseError(
            f"{provider} sent a body for model '{model}' that could not be decoded: "
            f"{redact(str(exc), secrets)}",
            model=model,
        ) from exc


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One server-sent event: its name (``message`` when unnamed) and its data."""

    event: str
    data: str


async def iter_sse(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """Parse a ``text/event-stream`` body into events, following the WHATWG rules we need.

    ``data:`` lines accumulate (joined by newlines), a blank line dispatches, ``event:`` names
    the event, comments (``:``) and ``id:``/``retry:`` are ignored. An event that is not closed
    by a blank line when the body ends is dropped, as the spec says: it was cut off.
    """
    event = ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield ServerSentEvent(event=event or "message", data="\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value


class HTTPModel(Model):
    """Base of the HTTP providers: owns (or borrows) an ``httpx.AsyncClient`` and maps errors.

    A client passed in is borrowed and left open by :meth:`aclose`; otherwise one is created on
    first use and closed by :meth:`aclose`.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None,
        provider: str,
        timeout_s: float,
        headers: Mapping[str, str] | None,
        http_client: httpx.AsyncClient | None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"base_url for {provider} must start with http:// or https://, got "
                f"{_display_url(base_url) if '://' in base_url else base_url!r}"
            )
        if timeout_s <= 0:
            raise ConfigurationError(f"timeout_s must be positive, got {timeout_s}")
        self._model = model
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._provider = provider
        self._timeout_s = timeout_s
        self._extra_headers = dict(headers or {})
        self._client = http_client
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._owns_client = http_client is None

    @property
    def name(self) -> str:
        """``provider:model``, e.g. ``openai:gpt-4o-mini``."""
        return f"{self._provider}:{self._model}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self._base_url!r})"

    @abc.abstractmethod
    def _auth_headers(self) -> dict[str, str]:
        """Headers that authenticate and version a request."""

    @property
    def _secrets(self) -> tuple[str, ...]:
        return (self._api_key,) if self._api_key else ()

    def _http(self) -> httpx.AsyncClient:
        if self._owns_client:
            # An httpx client belongs to the event loop it first ran on. Each ``run_sync`` runs
            # its own loop, so a client made on a loop that is gone is replaced, not reused.
            loop = asyncio.get_running_loop()
            if self._client is None or self._client_loop is not loop:
                self._client = httpx.AsyncClient(timeout=self._timeout_s)
                self._client_loop = loop
        assert self._client is not None  # a borrowed client is always set
        return self._client

    def _headers(self) -> dict[str, str]:
        return {**self._extra_headers, **self._auth_headers()}

    def _timeout(self, override: float | None) -> float:
        return self._timeout_s if override is None else override

    def _transport_errors(self, url: str, timeout_s: float) -> AbstractContextManager[None]:
        return translate_transport_errors(
            provider=self._provider,
            model=self._model,
            url=url,
            timeout_s=timeout_s,
            secrets=self._secrets,
        )

    def _http_error(self, response: httpx.Response) -> ModelHTTPError:
        return error_from_response(
            response, provider=self._provider, model=self._model, secrets=self._secrets
        )

    async def _post_json(self, url: str, payload: Mapping[str, Any], timeout_s: float) -> str:
        """POST ``payload``; return the body text of a 2xx answer, or raise a model error."""
        with self._transport_errors(url, timeout_s):
            response = await self._http().post(
                url, json=payload, headers=self._headers(), timeout=timeout_s
            )
            if response.status_code >= 400:
                raise self._http_error(response)
            return response.text

    @asynccontextmanager
    async def _open_stream(
        self, url: str, payload: Mapping[str, Any], timeout_s: float
    ) -> AsyncIterator[httpx.Response]:
        """POST ``payload`` and hold the streaming response open; error statuses raise.

        Transport errors while the caller reads the body are translated too.
        """
        with self._transport_errors(url, timeout_s):
            async with self._http().stream(
                "POST", url, json=payload, headers=self._headers(), timeout=timeout_s
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._http_error(response)
                yield response

    async def aclose(self) -> None:
        """Close the HTTP client if this model created it (on the loop it belongs to)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            if self._client_loop is asyncio.get_running_loop():
                await client.aclose()

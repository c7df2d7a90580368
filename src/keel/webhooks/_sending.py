"""One attempt of a delivery over HTTP, and what its outcome means.

Retried: network errors, timeouts, and the answers 408 (request timeout), 429 (too many
requests) and 5xx, after an exponential backoff with jitter, or after what ``Retry-After``
says when the endpoint sends it (capped at the backoff's maximum). Not retried: every other
answer outside 2xx (a 400, 401, 403, 404 or 410 will not get better by itself; redirects are
not followed), and the delivery is dead at once. Fix the endpoint, then ``keel webhooks
retry ID``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx

from keel._redact import redact
from keel.webhooks._config import Webhook
from keel.webhooks._signing import signed_headers

__all__ = ["Outcome", "backoff_s", "retry_after_s", "send"]

_RETRIED = frozenset({408, 429})
_USER_AGENT = "keel-webhooks"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt went: ``delivered``, ``retry`` (a failure that may pass) or ``fail``
    (one that will not); the HTTP status if an answer came, why it failed, and how long
    the endpoint asked to wait (``Retry-After``)."""

    result: Literal["delivered", "retry", "fail"]
    http_status: int | None = None
    error: str | None = None
    wait_s: float | None = None


def backoff_s(
    attempt: int, *, base_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """The wait after failed attempt number ``attempt`` (1, 2 ...): doubling from
    ``base_s`` up to ``max_s``, of which a random half is taken off ("equal jitter"), so that
    deliveries that failed together do not come back together."""
    ceiling = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return float(ceiling / 2 + rand() * ceiling / 2)


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _described(exc: Exception, endpoint: Webhook) -> str:
    # The URL may carry a token: name the endpoint, never the URL.
    text = str(exc).replace(endpoint.url, endpoint.name) or "no detail"
    return redact(f"{type(exc).__name__}: {text}")[:500]


async def send(
    client: httpx.AsyncClient,
    endpoint: Webhook,
    msg_id: str,
    body: bytes,
    *,
    timestamp: int,
    now: float,
) -> Outcome:
    """POST ``body`` to ``endpoint``, signed for this attempt; what came of it."""
    headers = {
        "content-type": "application/json",
        "user-agent": _USER_AGENT,
        **signed_headers(endpoint.secret, msg_id, timestamp, body),
    }
    try:
        answer = await client.post(endpoint.url, content=body, headers=headers)
    except httpx.TimeoutException as exc:
        return Outcome("retry", error=f"timed out: {_described(exc, endpoint)}")
    except httpx.HTTPError as exc:
        return Outcome("retry", error=f"could not reach the endpoint: {_described(exc, endpoint)}")
    code = answer.status_code
    if 200 <= code < 300:
        return Outcome("delivered", http_status=code)
    wait = retry_after_s(answer.headers.get("retry-after"), now)
    if code in _RETRIED or code >= 500:
        return Outcome(
            "retry", http_status=code, error=f"the endpoint answered {code}", wait_s=wait
        )
    return Outcome(
        "fail",
        http_status=code,
        error=f"the endpoint answered {code}; not retried (only 408, 429, 5xx and network "
        "errors are): fix the endpoint, then keel webhooks retry",
    )

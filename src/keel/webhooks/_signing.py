"""Signing webhooks the Standard Webhooks way, and checking them on the receiving side.

Each request carries three headers: ``webhook-id`` (the delivery's id: the same on every
attempt, for the receiver to drop duplicates), ``webhook-timestamp`` (seconds since the epoch
when this attempt was signed) and ``webhook-signature``: ``v1,`` and the base64 of
HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with the secret's key (:func:`signing_key`).
Several signatures may be listed, separated by spaces (while a secret is being rotated).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

from pydantic import SecretStr

from keel.errors import KeelError
from keel.webhooks._config import signing_key

__all__ = ["WebhookVerificationError", "sign", "signed_headers", "verify_signature"]


class WebhookVerificationError(KeelError):
    """A webhook request is not one signed with the secret: say no to it (e.g. HTTP 400)."""

    code = "webhook_verification_failed"


def sign(secret: SecretStr | str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one request."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: SecretStr | str, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers of one request."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"the request has no {name} header: it is not a webhook")


def verify_signature(
    secret: SecretStr | str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> None:
    """Check that a request was signed with ``secret`` and recently; raise
    :class:`WebhookVerificationError` saying what is wrong if not.

    Args:
        secret: The endpoint's secret (as given to :class:`keel.webhooks.Webhook`).
        headers: The request's headers (any mapping; names in any case).
        body: The request's body exactly as received (bytes; a str is UTF-8 encoded).
        tolerance_s: How far the ``webhook-timestamp`` may be from now, either way: an older
            request may be a replay.
        now: The time to compare with (default: the system clock).
    """
    raw = body.encode() if isinstance(body, str) else body
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(
            f"webhook-timestamp must be whole seconds since the epoch, got {stamp[:40]!r}"
        ) from None
    moment = time.time() if now is None else now
    if abs(moment - timestamp) > tolerance_s:
        when = "old" if timestamp < moment else "far in the future"
        raise WebhookVerificationError(
            f"the webhook's timestamp is too {when} ({abs(moment - timestamp):.0f}s from now, "
            f"more than {tolerance_s:.0f}s): it may be a replay, or a clock is wrong"
        )
    expected = sign(secret, msg_id, timestamp, raw)
    for candidate in signatures.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate, expected):
            return
    raise WebhookVerificationError(
        "no webhook-signature matches: the secret is not the sender's, or the body or headers "
        "were changed on the way"
    )

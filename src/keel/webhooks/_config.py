"""Webhook endpoints: where to send which events, signed with which secret.

The secret is a :class:`pydantic.SecretStr`: it never appears in a ``repr``, a log line or
an error. A URL may carry a token too (``?key=...``, ``user:password@``), so messages name
an endpoint by its ``name`` (by default its host and path), never by its full URL.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from keel.errors import ConfigurationError

__all__ = ["DEFAULT_EVENTS", "EVENT_TYPES", "EventType", "Webhook", "new_secret", "signing_key"]

EventType = Literal[
    "run.completed", "run.failed", "run.cancelled", "approval.requested", "run.paused"
]
"""What a webhook tells: a run ended (``run.completed``, ``run.failed``, ``run.cancelled``),
a run waits for a person's decision (``approval.requested``), a run paused on a limit
(``run.paused``)."""

EVENT_TYPES: frozenset[str] = frozenset(
    {"run.completed", "run.failed", "run.cancelled", "approval.requested", "run.paused"}
)
DEFAULT_EVENTS: frozenset[str] = EVENT_TYPES - {"run.paused"}
"""Every event but ``run.paused``: the end of each run and each request for a decision."""

_MIN_SECRET = 16
_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks format: ``whsec_`` and the base64 of
    32 random bytes. Give it to the receiver and to :class:`Webhook`."""
    return _SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: SecretStr | str) -> bytes:
    """The HMAC key of a secret: the decoded bytes after ``whsec_`` (Standard Webhooks), or
    the UTF-8 bytes of any other secret."""
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not isinstance(text, str) or len(text) < _MIN_SECRET:
        raise ConfigurationError(
            f"a webhook secret must be a string of at least {_MIN_SECRET} characters; make "
            "one with keel.webhooks.new_secret()"
        )
    if text.startswith(_SECRET_PREFIX):
        try:
            return base64.b64decode(text[len(_SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            # The message must not quote the secret.
            raise ConfigurationError(
                "a webhook secret that starts with 'whsec_' must go on in base64; make one "
                "with keel.webhooks.new_secret()"
            ) from None
    return text.encode()


def _events(events: Iterable[str]) -> frozenset[str]:
    chosen = frozenset([events] if isinstance(events, str) else events)
    unknown = sorted(chosen - EVENT_TYPES)
    if unknown or not chosen:
        raise ConfigurationError(
            f"webhook events must be some of {', '.join(sorted(EVENT_TYPES))}; got "
            f"{', '.join(unknown) if unknown else 'none'}"
        )
    return chosen


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Webhook:
    """One endpoint that receives signed webhooks.

    Args:
        url: Where to ``POST`` them (``http://`` or ``https://``).
        secret: The signing secret (:func:`new_secret`), shared with the receiver.
        events: Which events to send (:data:`EVENT_TYPES`); default :data:`DEFAULT_EVENTS`.
        tenant: Only runs of this tenant; ``None``: every run.
        name: How deliveries name this endpoint (``keel webhooks list``); default: the URL's
            host and path. Keep it when the URL changes, so pending deliveries follow.
    """

    url: str
    secret: SecretStr = field(repr=False)
    events: frozenset[str] = DEFAULT_EVENTS
    tenant: str | None = None
    name: str = ""

    def __init__(
        self,
        url: str,
        secret: SecretStr | str,
        events: Iterable[str] = DEFAULT_EVENTS,
        *,
        tenant: str | None = None,
        name: str | None = None,
    ) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "a webhook url must be an http:// or https:// URL with a host, e.g. "
                "https://example.com/hooks/keel"
            )
        kept = secret if isinstance(secret, SecretStr) else SecretStr(secret)
        signing_key(kept)  # refuses a short or malformed secret now, not at the first send
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise ConfigurationError(
                f"a webhook's tenant must be a non-empty string, got {tenant!r}"
            )
        label = name if name is not None else f"{parts.hostname}{parts.path or '/'}"
        if not isinstance(label, str) or not label or len(label) > 200:
            raise ConfigurationError(f"a webhook's name must be 1 to 200 characters, got {label!r}")
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "secret", kept)
        object.__setattr__(self, "events", _events(events))
        object.__setattr__(self, "tenant", tenant)
        object.__setattr__(self, "name", label)

    def __repr__(self) -> str:
        return (
            f"Webhook(name={self.name!r}, events={sorted(self.events)}, tenant={self.tenant!r}, "
            "secret=SecretStr('**********'))"
        )

    def wants(self, event_type: str, tenant: str | None) -> bool:
        """Whether this endpoint gets ``event_type`` for a run of ``tenant``."""
        return event_type in self.events and (self.tenant is None or self.tenant == tenant)

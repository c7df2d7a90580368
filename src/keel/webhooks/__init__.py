"""Signed webhooks on run events: a run ended (``run.completed``, ``run.failed``,
``run.cancelled``), a run waits for a person (``approval.requested``), a run paused
(``run.paused``, if asked for).

::

    webhooks = Webhooks([Webhook("https://example.com/hooks/keel", secret=SECRET)])
    runtime = Runtime(agents=[support], observers=[webhooks])
    async with runtime, webhooks.running(runtime):
        ...  # every run that ends is POSTed, signed, to the endpoint

Deliveries are kept in an outbox beside the journal (memory, SQLite or PostgreSQL) and
derived from the journal itself, so an event journaled just before a crash is still told;
each is delivered at least once, with a ``webhook-id`` the receiver drops repeats by, retried
with exponential backoff and jitter, and given up as ``dead`` after ``max_attempts`` (listed
and retried with ``keel webhooks list`` / ``retry``). Requests are signed the Standard
Webhooks way; receivers check them with :func:`verify_signature`.

``PostgresOutbox`` is imported on first use, so ``keel.webhooks`` works without the
``postgres`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.webhooks._config import DEFAULT_EVENTS, EVENT_TYPES, EventType, Webhook, new_secret
from keel.webhooks._memory import MemoryOutbox
from keel.webhooks._open import open_outbox
from keel.webhooks._outbox import Delivery, DeliveryStatus, Outbox, delivery_id
from keel.webhooks._signing import WebhookVerificationError, sign, verify_signature
from keel.webhooks._sqlite import SQLiteOutbox
from keel.webhooks._webhooks import Webhooks

if TYPE_CHECKING:
    from keel.webhooks._postgres import PostgresOutbox

# Plain sorted, as the public API test wants (constants among the classes).
__all__ = [  # noqa: RUF022
    "DEFAULT_EVENTS",
    "Delivery",
    "DeliveryStatus",
    "EVENT_TYPES",
    "EventType",
    "MemoryOutbox",
    "Outbox",
    "PostgresOutbox",
    "SQLiteOutbox",
    "Webhook",
    "WebhookVerificationError",
    "Webhooks",
    "delivery_id",
    "new_secret",
    "open_outbox",
    "sign",
    "verify_signature",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresOutbox":
        from keel.webhooks._postgres import PostgresOutbox

        return PostgresOutbox
    raise AttributeError(f"module 'keel.webhooks' has no attribute {name!r}")

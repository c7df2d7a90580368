"""The webhook outbox: one row per (event, endpoint) to deliver, kept beside the journal.

A row holds references (the run, the journal position of the event, the endpoint's name),
never the payload: the payload is built from the journal at each attempt, so nothing the
store encrypts at rest lies in the outbox in the clear, and every attempt sends the same
body. Besides the deliveries, the outbox keeps how far each recently changed run's journal
was looked at (``seen``), and a cursor on the runs' ``updated_at``, so that a deliverer that
starts finds what changed while none ran (see :meth:`Outbox.changed_runs`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

__all__ = ["Changed", "Delivery", "DeliveryStatus", "Outbox", "delivery_id"]

DeliveryStatus = Literal["pending", "delivered", "dead"]
"""``pending``: to be sent (again) at ``next_attempt_at``; ``delivered``: the endpoint
answered 2xx; ``dead``: given up (attempts used up, or an answer that is not retried)."""


def delivery_id(run_id: str, seq: int, endpoint: str) -> str:
    """The delivery's id, sent as ``webhook-id``: the same for the same event and endpoint,
    whoever derives it, so two deliverers that find one event make one delivery."""
    digest = hashlib.sha256(f"{run_id}\n{seq}\n{endpoint}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One event to deliver to one endpoint, and how that went so far.

    Attributes:
        id: Sent as ``webhook-id`` on every attempt.
        endpoint: The endpoint's name (:attr:`keel.webhooks.Webhook.name`).
        event_type: ``run.completed``, ``approval.requested``...
        run_id: The run.
        seq: The journal position of the event the webhook tells of.
        status: ``pending``, ``delivered`` or ``dead``.
        attempts: Attempts made (counted when one starts).
        next_attempt_at: When the next attempt is due (pending only).
        created_at: When the delivery was made.
        updated_at: When it last changed.
        delivered_at: When the endpoint took it.
        last_status: The HTTP status of the last answer, if there was one.
        last_error: Why the last attempt failed (no secret, no URL query).
        lease_owner: The deliverer sending it now, if one is.
        lease_expires_at: Until when that deliverer has it.
    """

    id: str
    endpoint: str
    event_type: str
    run_id: str
    seq: int
    status: DeliveryStatus = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    delivered_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Changed:
    """A run with journal events the outbox has not looked at: ``seen`` < ``last_seq``."""

    run_id: str
    last_seq: int
    seen: int
    updated_at: float


class Outbox(ABC):
    """Deliveries to make, and what was looked at; memory, SQLite or PostgreSQL."""

    # -- finding events ---------------------------------------------------------------------

    @abstractmethod
    async def cursor(self, now: float) -> float:
        """The ``updated_at`` up to which runs were looked at; set to ``now`` the first time
        (a new outbox does not go back over history)."""

    @abstractmethod
    async def advance_cursor(self, to: float) -> None:
        """Move the cursor to ``to`` if that is later."""

    @abstractmethod
    async def changed_runs(
        self,
        *,
        since: float | None = None,
        run_ids: Collection[str] | None = None,
        limit: int = 500,
    ) -> list[Changed]:
        """Runs updated at or after ``since`` (or among ``run_ids``) whose journal goes past
        what was looked at, oldest change first."""

    @abstractmethod
    async def record(self, changed: Changed, seen: int, deliveries: Sequence[Delivery]) -> int:
        """Add ``deliveries`` (one already there is left as it is) and note that the run's
        journal was looked at up to ``seen``, in one transaction; return how many were new."""

    @abstractmethod
    async def forget_runs(self, updated_before: float) -> int:
        """Drop the notes on runs whose latest change was before ``updated_before``."""

    # -- delivering ---------------------------------------------------------------------------

    @abstractmethod
    async def claim(
        self,
        *,
        owner: str,
        endpoints: Collection[str],
        now: float,
        lease_s: float,
        limit: int,
    ) -> list[Delivery]:
        """Lease up to ``limit`` pending deliveries due by ``now`` to ``owner`` for
        ``lease_s`` (counting an attempt each): none leased by another unexpired owner, so two
        deliverers never send one delivery at once."""

    @abstractmethod
    async def finish(
        self,
        delivery: Delivery,
        *,
        owner: str,
        status: DeliveryStatus,
        now: float,
        next_attempt_at: float | None = None,
        http_status: int | None = None,
        error: str | None = None,
    ) -> bool:
        """Record an attempt's outcome and free the lease, if ``owner`` still holds it
        (``False``: it lost it, and the outcome is dropped)."""

    @abstractmethod
    async def next_due(self, endpoints: Collection[str]) -> float | None:
        """When the earliest pending delivery to one of ``endpoints`` is due."""

    # -- looking and operating ----------------------------------------------------------------

    @abstractmethod
    async def get(self, delivery_id: str) -> Delivery | None:
        """One delivery by id."""

    @abstractmethod
    async def deliveries(
        self, *, status: DeliveryStatus | None = None, limit: int = 50
    ) -> list[Delivery]:
        """Deliveries, latest first (of ``status`` only, when given)."""

    @abstractmethod
    async def retry(self, delivery_id: str, *, now: float) -> Delivery | None:
        """Make a dead (or pending) delivery pending again, due now, with its attempts
        counted from zero; ``None`` if there is no such delivery. A delivered one is left."""

    @abstractmethod
    async def prune(self, *, delivered_before: float) -> int:
        """Delete deliveries delivered before ``delivered_before``; return how many."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections; closing twice is fine."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

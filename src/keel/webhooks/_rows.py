"""Deliveries as table rows, in the column order of :data:`keel.webhooks._sql.DELIVERY_COLUMNS`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from keel.webhooks._outbox import Delivery, DeliveryStatus

__all__ = ["delivery_of", "delivery_row"]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def delivery_row(d: Delivery) -> tuple[Any, ...]:
    """The row of a delivery."""
    return (
        d.id,
        d.endpoint,
        d.event_type,
        d.run_id,
        d.seq,
        d.status,
        d.attempts,
        d.next_attempt_at,
        d.created_at,
        d.updated_at,
        d.delivered_at,
        d.last_status,
        d.last_error,
        d.lease_owner,
        d.lease_expires_at,
    )


def delivery_of(row: Sequence[Any]) -> Delivery:
    """A delivery from its row."""
    return Delivery(
        id=row[0],
        endpoint=row[1],
        event_type=row[2],
        run_id=row[3],
        seq=int(row[4]),
        status=cast(DeliveryStatus, row[5]),
        attempts=int(row[6]),
        next_attempt_at=float(row[7]),
        created_at=float(row[8]),
        updated_at=float(row[9]),
        delivered_at=_float(row[10]),
        last_status=None if row[11] is None else int(row[11]),
        last_error=row[12],
        lease_owner=row[13],
        lease_expires_at=_float(row[14]),
    )

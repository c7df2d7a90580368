"""The outbox in this process's memory, over the runs of a store object: for tests and
examples; gone when the process ends (as a memory store's runs are)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import replace

from keel.errors import RunNotFoundError
from keel.ports import Store
from keel.webhooks._outbox import Changed, Delivery, DeliveryStatus, Outbox

__all__ = ["MemoryOutbox"]


class MemoryOutbox(Outbox):
    """An :class:`Outbox` held in memory. ``store``: the runs to find events in (without one,
    only deliveries made elsewhere can be listed and sent)."""

    def __init__(self, store: Store | None = None) -> None:
        self._store = store
        self._deliveries: dict[str, Delivery] = {}
        self._seen: dict[str, tuple[int, float]] = {}
        self._cursor: float | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"MemoryOutbox(deliveries={len(self._deliveries)})"

    async def cursor(self, now: float) -> float:
        if self._cursor is None:
            self._cursor = now
        return self._cursor

    async def advance_cursor(self, to: float) -> None:
        self._cursor = to if self._cursor is None else max(self._cursor, to)

    async def changed_runs(
        self,
        *,
        since: float | None = None,
        run_ids: Collection[str] | None = None,
        limit: int = 500,
    ) -> list[Changed]:
        if self._store is None:
            return []
        if run_ids is not None:
            records = []
            for run_id in run_ids:
                try:
                    records.append(await self._store.get_run(run_id))
                except RunNotFoundError:
                    continue  # deleted meanwhile: nothing to tell
        else:
            records = await self._store.list_runs(limit=None)
        changed = []
        for record in records:
            seen = self._seen.get(record.run_id, (0, 0.0))[0]
            recent = since is None or record.updated_at >= since
            if recent and record.last_seq > seen:
                changed.append(Changed(record.run_id, record.last_seq, seen, record.updated_at))
        return sorted(changed, key=lambda c: (c.updated_at, c.run_id))[:limit]

    async def record(self, changed: Changed, seen: int, deliveries: Sequence[Delivery]) -> int:
        async with self._lock:
            new = 0
            for delivery in deliveries:
                if delivery.id not in self._deliveries:
                    self._deliveries[delivery.id] = delivery
                    new += 1
            before = self._seen.get(changed.run_id, (0, 0.0))[0]
            self._seen[changed.run_id] = (max(before, seen), changed.updated_at)
            return new

    async def forget_runs(self, updated_before: float) -> int:
        async with self._lock:
            old = [r for r, (_, at) in self._seen.items() if at < updated_before]
            for run_id in old:
                del self._seen[run_id]
            return len(old)

    async def claim(
        self,
        *,
        owner: str,
        endpoints: Collection[str],
        now: float,
        lease_s: float,
        limit: int,
    ) -> list[Delivery]:
        async with self._lock:
            due = sorted(
                (
                    d
                    for d in self._deliveries.values()
                    if d.status == "pending"
                    and d.endpoint in endpoints
                    and d.next_attempt_at <= now
                    and (d.lease_expires_at is None or d.lease_expires_at <= now)
                ),
                key=lambda d: (d.next_attempt_at, d.id),
            )[:limit]
            taken = []
            for delivery in due:
                leased = replace(
                    delivery,
                    attempts=delivery.attempts + 1,
                    lease_owner=owner,
                    lease_expires_at=now + lease_s,
                    updated_at=now,
                )
                self._deliveries[delivery.id] = leased
                taken.append(leased)
            return taken

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
        async with self._lock:
            current = self._deliveries.get(delivery.id)
            if current is None or current.lease_owner != owner:
                return False
            self._deliveries[delivery.id] = replace(
                current,
                status=status,
                next_attempt_at=current.next_attempt_at
                if next_attempt_at is None
                else next_attempt_at,
                last_status=http_status,
                last_error=error,
                delivered_at=now if status == "delivered" else None,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
            return True

    async def next_due(self, endpoints: Collection[str]) -> float | None:
        return min(
            (
                max(d.next_attempt_at, d.lease_expires_at or 0.0)
                for d in self._deliveries.values()
                if d.status == "pending" and d.endpoint in endpoints
            ),
            default=None,
        )

    async def get(self, delivery_id: str) -> Delivery | None:
        return self._deliveries.get(delivery_id)

    async def deliveries(
        self, *, status: DeliveryStatus | None = None, limit: int = 50
    ) -> list[Delivery]:
        found = [d for d in self._deliveries.values() if status is None or d.status == status]
        return sorted(found, key=lambda d: (-d.created_at, d.id))[:limit]

    async def retry(self, delivery_id: str, *, now: float) -> Delivery | None:
        async with self._lock:
            current = self._deliveries.get(delivery_id)
            if current is None or current.status == "delivered":
                return current
            again = replace(
                current,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
            self._deliveries[delivery_id] = again
            return again

    async def prune(self, *, delivered_before: float) -> int:
        async with self._lock:
            old = [
                i
                for i, d in self._deliveries.items()
                if d.status == "delivered" and (d.delivered_at or 0.0) < delivered_before
            ]
            for delivery_id in old:
                del self._deliveries[delivery_id]
            return len(old)

    async def aclose(self) -> None:
        return None

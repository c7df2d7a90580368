"""The outbox in the store's SQLite file: its tables beside the journal's.

Claims are one ``UPDATE ... RETURNING`` (SQLite runs each write statement under the
database's write lock, so two deliverers never lease one delivery); adding deliveries and
noting how far a run was looked at is one ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path

from keel._side_sqlite import SQLiteTables, immediate
from keel.webhooks._outbox import Changed, Delivery, DeliveryStatus, Outbox
from keel.webhooks._rows import delivery_of, delivery_row
from keel.webhooks._sql import SQLITE_SCHEMA, Statements

__all__ = ["SQLiteOutbox"]

_SQL = Statements(postgres=False)


def _changed(rows: list[tuple[object, ...]]) -> list[Changed]:
    return [Changed(str(r[0]), int(str(r[1])), int(str(r[2])), float(str(r[3]))) for r in rows]


class SQLiteOutbox(Outbox):
    """An :class:`Outbox` in a SQLite file: the store's (``keel.db``), whose runs it reads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._tables = SQLiteTables(Path(path), SQLITE_SCHEMA, what="the webhook outbox")

    @property
    def path(self) -> Path:
        """The database file."""
        return self._tables.path

    def __repr__(self) -> str:
        return f"SQLiteOutbox('{self.path}')"

    async def cursor(self, now: float) -> float:
        def read(conn: sqlite3.Connection) -> float:
            conn.execute(_SQL.cursor_init, (now,))
            return float(conn.execute(_SQL.cursor).fetchone()[0])

        return await self._tables.run("read the cursor", read)

    async def advance_cursor(self, to: float) -> None:
        await self._tables.run(
            "move the cursor", lambda c: c.execute(_SQL.cursor_advance, (to, to))
        )

    async def changed_runs(
        self,
        *,
        since: float | None = None,
        run_ids: Collection[str] | None = None,
        limit: int = 500,
    ) -> list[Changed]:
        def read(conn: sqlite3.Connection) -> list[Changed]:
            if (
                conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
                ).fetchone()
                is None
            ):
                return []  # no store has written here yet
            if run_ids is not None:
                rows = conn.execute(_SQL.changed_of, (json.dumps(list(run_ids)), limit))
            else:
                rows = conn.execute(_SQL.changed_since, (since or 0.0, limit))
            return _changed(rows.fetchall())

        return await self._tables.run("find changed runs", read)

    async def record(self, changed: Changed, seen: int, deliveries: Sequence[Delivery]) -> int:
        def write(conn: sqlite3.Connection) -> int:
            with immediate(conn):
                new = 0
                for delivery in deliveries:
                    new += conn.execute(_SQL.insert, delivery_row(delivery)).rowcount
                conn.execute(_SQL.seen, (changed.run_id, seen, changed.updated_at))
            return new

        return await self._tables.run("record deliveries", write)

    async def forget_runs(self, updated_before: float) -> int:
        return await self._tables.run(
            "forget old runs", lambda c: c.execute(_SQL.forget, (updated_before,)).rowcount
        )

    async def claim(
        self,
        *,
        owner: str,
        endpoints: Collection[str],
        now: float,
        lease_s: float,
        limit: int,
    ) -> list[Delivery]:
        params = (owner, now + lease_s, now, now, now, json.dumps(sorted(endpoints)), limit)

        def claim(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(_SQL.claim, params).fetchall()
            return sorted((delivery_of(r) for r in rows), key=lambda d: (d.next_attempt_at, d.id))

        return await self._tables.run("claim deliveries", claim)

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
        delivered = now if status == "delivered" else None
        params = (status, next_attempt_at, http_status, error, delivered, now, delivery.id, owner)
        done = await self._tables.run(
            "record an attempt", lambda c: c.execute(_SQL.finish, params).rowcount
        )
        return bool(done)

    async def next_due(self, endpoints: Collection[str]) -> float | None:
        row = await self._tables.run(
            "read the next due delivery",
            lambda c: c.execute(_SQL.next_due, (json.dumps(sorted(endpoints)),)).fetchone(),
        )
        return None if row is None or row[0] is None else float(row[0])

    async def get(self, delivery_id: str) -> Delivery | None:
        row = await self._tables.run(
            "read a delivery", lambda c: c.execute(_SQL.get, (delivery_id,)).fetchone()
        )
        return None if row is None else delivery_of(row)

    async def deliveries(
        self, *, status: DeliveryStatus | None = None, limit: int = 50
    ) -> list[Delivery]:
        def read(conn: sqlite3.Connection) -> list[Delivery]:
            if status is None:
                rows = conn.execute(_SQL.all, (limit,))
            else:
                rows = conn.execute(_SQL.of_status, (status, limit))
            return [delivery_of(r) for r in rows.fetchall()]

        return await self._tables.run("list deliveries", read)

    async def retry(self, delivery_id: str, *, now: float) -> Delivery | None:
        def again(conn: sqlite3.Connection) -> Delivery | None:
            conn.execute(_SQL.retry, (now, now, delivery_id))
            row = conn.execute(_SQL.get, (delivery_id,)).fetchone()
            return None if row is None else delivery_of(row)

        return await self._tables.run("retry a delivery", again)

    async def prune(self, *, delivered_before: float) -> int:
        return await self._tables.run(
            "prune deliveries", lambda c: c.execute(_SQL.prune, (delivered_before,)).rowcount
        )

    async def aclose(self) -> None:
        await self._tables.close()

"""The outbox in the store's PostgreSQL schema (the ``postgres`` extra): its tables beside
the journal's, shared by every deliverer on every host.

A claim is one ``UPDATE`` whose inner ``SELECT ... FOR UPDATE SKIP LOCKED`` picks due,
unleased rows: two deliverers claiming at once lock different rows, and a row leased a moment
ago is seen leased. Adding deliveries and noting how far a run was looked at is one
transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from keel._side_postgres import Connection, PostgresTables
from keel.webhooks._outbox import Changed, Delivery, DeliveryStatus, Outbox
from keel.webhooks._rows import delivery_of, delivery_row
from keel.webhooks._sql import POSTGRES_SETUP, Statements

__all__ = ["PostgresOutbox"]


class PostgresOutbox(Outbox):
    """An :class:`Outbox` in PostgreSQL, in the store's schema (``keel`` by default).

    Nothing connects until first use; the password never appears in a ``repr`` or an error.
    """

    def __init__(self, url: str, *, schema: str = "keel") -> None:
        self._tables = PostgresTables(
            url, schema=schema, setup=POSTGRES_SETUP, what="the webhook outbox"
        )
        self._sql = Statements(postgres=True, schema=self._tables.sql("{schema}"))

    def __repr__(self) -> str:
        return f"PostgresOutbox('{self._tables.where}', schema={self._tables.schema!r})"

    async def cursor(self, now: float) -> float:
        async def read(conn: Connection) -> float:
            await conn.execute(self._sql.cursor_init, (now,))
            row = await (await conn.execute(self._sql.cursor)).fetchone()
            assert row is not None  # inserted just above if it was missing
            return float(row[0])

        return await self._tables.run("read the cursor", read)

    async def advance_cursor(self, to: float) -> None:
        async def move(conn: Connection) -> None:
            await conn.execute(self._sql.cursor_advance, (to, to))

        await self._tables.run("move the cursor", move)

    async def changed_runs(
        self,
        *,
        since: float | None = None,
        run_ids: Collection[str] | None = None,
        limit: int = 500,
    ) -> list[Changed]:
        async def read(conn: Connection) -> list[Changed]:
            exists = await (
                await conn.execute("SELECT to_regclass(%s)", (self._tables.sql("{schema}.runs"),))
            ).fetchone()
            if exists is None or exists[0] is None:
                return []  # no store has written here yet
            if run_ids is not None:
                cursor = await conn.execute(self._sql.changed_of, (list(run_ids), limit))
            else:
                cursor = await conn.execute(self._sql.changed_since, (since or 0.0, limit))
            return [
                Changed(str(r[0]), int(r[1]), int(r[2]), float(r[3]))
                for r in await cursor.fetchall()
            ]

        return await self._tables.run("find changed runs", read)

    async def record(self, changed: Changed, seen: int, deliveries: Sequence[Delivery]) -> int:
        async def write(conn: Connection) -> int:
            new = 0
            async with conn.transaction():
                for delivery in deliveries:
                    done = await conn.execute(self._sql.insert, delivery_row(delivery))
                    new += max(done.rowcount, 0)
                await conn.execute(self._sql.seen, (changed.run_id, seen, changed.updated_at))
            return new

        return await self._tables.run("record deliveries", write)

    async def forget_runs(self, updated_before: float) -> int:
        async def forget(conn: Connection) -> int:
            return (await conn.execute(self._sql.forget, (updated_before,))).rowcount

        return await self._tables.run("forget old runs", forget)

    async def claim(
        self,
        *,
        owner: str,
        endpoints: Collection[str],
        now: float,
        lease_s: float,
        limit: int,
    ) -> list[Delivery]:
        params = (owner, now + lease_s, now, now, now, sorted(endpoints), limit)

        async def claim(conn: Connection) -> list[Delivery]:
            rows = await (await conn.execute(self._sql.claim, params)).fetchall()
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

        async def finish(conn: Connection) -> bool:
            return (await conn.execute(self._sql.finish, params)).rowcount == 1

        return await self._tables.run("record an attempt", finish)

    async def next_due(self, endpoints: Collection[str]) -> float | None:
        async def read(conn: Connection) -> float | None:
            row = await (await conn.execute(self._sql.next_due, (sorted(endpoints),))).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._tables.run("read the next due delivery", read)

    async def get(self, delivery_id: str) -> Delivery | None:
        async def read(conn: Connection) -> Delivery | None:
            row = await (await conn.execute(self._sql.get, (delivery_id,))).fetchone()
            return None if row is None else delivery_of(row)

        return await self._tables.run("read a delivery", read)

    async def deliveries(
        self, *, status: DeliveryStatus | None = None, limit: int = 50
    ) -> list[Delivery]:
        async def read(conn: Connection) -> list[Delivery]:
            if status is None:
                cursor = await conn.execute(self._sql.all, (limit,))
            else:
                cursor = await conn.execute(self._sql.of_status, (status, limit))
            return [delivery_of(r) for r in await cursor.fetchall()]

        return await self._tables.run("list deliveries", read)

    async def retry(self, delivery_id: str, *, now: float) -> Delivery | None:
        async def again(conn: Connection) -> Delivery | None:
            await conn.execute(self._sql.retry, (now, now, delivery_id))
            row = await (await conn.execute(self._sql.get, (delivery_id,))).fetchone()
            return None if row is None else delivery_of(row)

        return await self._tables.run("retry a delivery", again)

    async def prune(self, *, delivered_before: float) -> int:
        async def prune(conn: Connection) -> int:
            return (await conn.execute(self._sql.prune, (delivered_before,))).rowcount

        return await self._tables.run("prune deliveries", prune)

    async def aclose(self) -> None:
        await self._tables.close()

"""Schedules in the store's PostgreSQL schema (the ``postgres`` extra): two tables beside
the journal's.

A fire is taken in one transaction: the conditional ``UPDATE`` of the schedule's
``next_due`` (a second scheduler's identical ``UPDATE`` waits for the first one's row lock,
then finds ``next_due`` moved and changes nothing) and the fire's insert.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from keel._side_postgres import Connection, PostgresTables
from keel.schedules._model import Fire, Schedule, ScheduleState
from keel.schedules._rows import fire_of, fire_row, state_of, state_row
from keel.schedules._sql import POSTGRES_SETUP, for_postgres
from keel.schedules._store import ScheduleStore, exists, kept_next_due

__all__ = ["PostgresScheduleStore"]


class _TakenError(Exception):
    """The fire's row exists: the transaction that moved ``next_due`` is rolled back."""


class PostgresScheduleStore(ScheduleStore):
    """A :class:`ScheduleStore` in PostgreSQL, shared by every scheduler on every host.

    Args:
        url: A libpq connection string or URL (the store's).
        schema: The schema of the tables (the store's, ``keel`` by default).

    Nothing connects until first use; the password never appears in a ``repr`` or an error.
    """

    def __init__(self, url: str, *, schema: str = "keel") -> None:
        self._tables = PostgresTables(
            url, schema=schema, setup=POSTGRES_SETUP, what="the schedule store"
        )
        self._sql = for_postgres(self._tables.sql("{schema}"))

    def __repr__(self) -> str:
        return f"PostgresScheduleStore('{self._tables.where}', schema={self._tables.schema!r})"

    async def _add(self, schedule: Schedule, now: float, replace: bool) -> ScheduleState:
        async def add(conn: Connection) -> ScheduleState:
            async with conn.transaction():
                row = await (
                    await conn.execute(self._sql.get_for_update, (schedule.name,))
                ).fetchone()
                old = None if row is None else state_of(row)
                if old is not None and not replace:
                    raise exists(schedule.name)
                state = ScheduleState(
                    schedule=schedule,
                    next_due=kept_next_due(old, schedule, now),
                    last_due=None if old is None else old.last_due,
                    last_run_id=None if old is None else old.last_run_id,
                    created_at=now if old is None else old.created_at,
                    updated_at=now,
                )
                values = state_row(state)
                if old is None:
                    done = await conn.execute(self._sql.insert, values)
                    if done.rowcount != 1:  # added by someone else meanwhile
                        raise exists(schedule.name)
                else:
                    await conn.execute(self._sql.update, (*values[1:], schedule.name))
                return state

        return await self._tables.run("add a schedule", add)

    async def get(self, name: str) -> ScheduleState | None:
        async def get(conn: Connection) -> ScheduleState | None:
            row = await (await conn.execute(self._sql.get, (name,))).fetchone()
            return None if row is None else state_of(row)

        return await self._tables.run("read a schedule", get)

    async def all(self) -> list[ScheduleState]:
        async def all_of(conn: Connection) -> list[ScheduleState]:
            return [state_of(r) for r in await (await conn.execute(self._sql.all)).fetchall()]

        return await self._tables.run("list schedules", all_of)

    async def remove(self, name: str) -> bool:
        async def remove(conn: Connection) -> bool:
            async with conn.transaction():
                gone = (await conn.execute(self._sql.delete, (name,))).rowcount
                await conn.execute(self._sql.delete_fires, (name,))
            return gone > 0

        return await self._tables.run("remove a schedule", remove)

    async def _set_enabled(self, name: str, enabled: bool, now: float) -> ScheduleState | None:
        async def change(conn: Connection) -> ScheduleState | None:
            async with conn.transaction():
                row = await (await conn.execute(self._sql.get_for_update, (name,))).fetchone()
                if row is None:
                    return None
                old = state_of(row)
                state = dataclasses.replace(
                    old,
                    schedule=dataclasses.replace(old.schedule, enabled=enabled),
                    next_due=old.schedule.next_after(now) if enabled else old.next_due,
                    updated_at=now,
                )
                await conn.execute(self._sql.update, (*state_row(state)[1:], name))
                return state

        return await self._tables.run("pause or resume a schedule", change)

    async def due(self, now: float, agents: Collection[str] | None = None) -> list[ScheduleState]:
        async def due(conn: Connection) -> list[ScheduleState]:
            rows = await (await conn.execute(self._sql.due, (now,))).fetchall()
            return [state_of(r) for r in rows]

        found = await self._tables.run("read due schedules", due)
        return [s for s in found if agents is None or s.schedule.agent in agents]

    async def earliest(self, agents: Collection[str] | None = None) -> float | None:
        found = [
            s.next_due
            for s in await self.all()
            if s.schedule.enabled and (agents is None or s.schedule.agent in agents)
        ]
        return min(found, default=None)

    async def claim(self, state: ScheduleState, fire: Fire, next_due: float) -> bool:
        async def claim(conn: Connection) -> bool:
            try:
                async with conn.transaction():
                    moved = await conn.execute(
                        self._sql.advance,
                        (
                            next_due,
                            fire.due_at,
                            fire.run_id,
                            fire.claimed_at,
                            fire.name,
                            state.next_due,
                        ),
                    )
                    if moved.rowcount != 1:
                        return False
                    inserted = await conn.execute(self._sql.insert_fire, fire_row(fire))
                    if inserted.rowcount != 1:
                        raise _TakenError  # this due time was taken before: roll the move back
            except _TakenError:
                return False
            return True

        return await self._tables.run("claim a fire", claim)

    async def mark_submitted(self, name: str, due_at: float, *, now: float) -> None:
        async def mark(conn: Connection) -> None:
            await conn.execute(self._sql.submitted, (now, name, due_at))

        await self._tables.run("mark a fire submitted", mark)

    async def unsubmitted(self, claimed_before: float) -> list[Fire]:
        async def read(conn: Connection) -> list[Fire]:
            rows = await (await conn.execute(self._sql.unsubmitted, (claimed_before,))).fetchall()
            return [fire_of(r) for r in rows]

        return await self._tables.run("read unsubmitted fires", read)

    async def fires(self, name: str | None = None, *, limit: int = 50) -> list[Fire]:
        async def read(conn: Connection) -> list[Fire]:
            if name is None:
                cursor = await conn.execute(self._sql.fires, (limit,))
            else:
                cursor = await conn.execute(self._sql.fires_of, (name, limit))
            return [fire_of(r) for r in await cursor.fetchall()]

        return await self._tables.run("list fires", read)

    async def aclose(self) -> None:
        await self._tables.close()

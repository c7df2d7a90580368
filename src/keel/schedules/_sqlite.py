"""Schedules in the store's SQLite file: two tables beside the journal's.

A fire is taken in ``BEGIN IMMEDIATE`` (the database's write lock): the compare-and-set on
the schedule's ``next_due`` and the fire's insert are one transaction, and schedulers in
other processes take turns on the lock, so a due time is taken once.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Collection
from pathlib import Path

from keel._side_sqlite import SQLiteTables, immediate
from keel.schedules._model import Fire, Schedule, ScheduleState
from keel.schedules._rows import fire_of, fire_row, state_of, state_row
from keel.schedules._sql import SQLITE_SCHEMA, for_sqlite
from keel.schedules._store import ScheduleStore, exists, kept_next_due

__all__ = ["SQLiteScheduleStore"]

_SQL = for_sqlite()


class SQLiteScheduleStore(ScheduleStore):
    """A :class:`ScheduleStore` in a SQLite file, usually the store's (``keel.db``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._tables = SQLiteTables(Path(path), SQLITE_SCHEMA, what="the schedule store")

    @property
    def path(self) -> Path:
        """The database file."""
        return self._tables.path

    def __repr__(self) -> str:
        return f"SQLiteScheduleStore('{self.path}')"

    async def _add(self, schedule: Schedule, now: float, replace: bool) -> ScheduleState:
        def add(conn: sqlite3.Connection) -> ScheduleState:
            with immediate(conn):
                row = conn.execute(_SQL.get, (schedule.name,)).fetchone()
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
                    conn.execute(_SQL.insert, values)
                else:
                    conn.execute(_SQL.update, (*values[1:], schedule.name))
                return state

        return await self._tables.run("add a schedule", add)

    async def get(self, name: str) -> ScheduleState | None:
        row = await self._tables.run(
            "read a schedule", lambda c: c.execute(_SQL.get, (name,)).fetchone()
        )
        return None if row is None else state_of(row)

    async def all(self) -> list[ScheduleState]:
        rows = await self._tables.run("list schedules", lambda c: c.execute(_SQL.all).fetchall())
        return [state_of(row) for row in rows]

    async def remove(self, name: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            with immediate(conn):
                gone = conn.execute(_SQL.delete, (name,)).rowcount
                conn.execute(_SQL.delete_fires, (name,))
            return gone > 0

        return await self._tables.run("remove a schedule", remove)

    async def _set_enabled(self, name: str, enabled: bool, now: float) -> ScheduleState | None:
        def change(conn: sqlite3.Connection) -> ScheduleState | None:
            with immediate(conn):
                row = conn.execute(_SQL.get, (name,)).fetchone()
                if row is None:
                    return None
                old = state_of(row)
                state = ScheduleState(
                    schedule=_with_enabled(old.schedule, enabled),
                    next_due=old.schedule.next_after(now) if enabled else old.next_due,
                    last_due=old.last_due,
                    last_run_id=old.last_run_id,
                    created_at=old.created_at,
                    updated_at=now,
                )
                conn.execute(_SQL.update, (*state_row(state)[1:], name))
                return state

        return await self._tables.run("pause or resume a schedule", change)

    async def due(self, now: float, agents: Collection[str] | None = None) -> list[ScheduleState]:
        rows = await self._tables.run(
            "read due schedules", lambda c: c.execute(_SQL.due, (now,)).fetchall()
        )
        found = [state_of(row) for row in rows]
        return [s for s in found if agents is None or s.schedule.agent in agents]

    async def earliest(self, agents: Collection[str] | None = None) -> float | None:
        if agents is not None:
            found = [
                s.next_due
                for s in await self.all()
                if s.schedule.enabled and s.schedule.agent in agents
            ]
            return min(found, default=None)
        row = await self._tables.run(
            "read the next due time", lambda c: c.execute(_SQL.earliest).fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    async def claim(self, state: ScheduleState, fire: Fire, next_due: float) -> bool:
        def claim(conn: sqlite3.Connection) -> bool:
            try:
                return take(conn)
            except _TakenError:
                return False

        def take(conn: sqlite3.Connection) -> bool:
            with immediate(conn):
                moved = conn.execute(
                    _SQL.advance,
                    (
                        next_due,
                        fire.due_at,
                        fire.run_id,
                        fire.claimed_at,
                        fire.name,
                        state.next_due,
                    ),
                ).rowcount
                if moved != 1:
                    return False
                if conn.execute(_SQL.insert_fire, fire_row(fire)).rowcount != 1:
                    raise _TakenError  # this due time was taken before: roll the move back
            return True

        return await self._tables.run("claim a fire", claim)

    async def mark_submitted(self, name: str, due_at: float, *, now: float) -> None:
        await self._tables.run(
            "mark a fire submitted", lambda c: c.execute(_SQL.submitted, (now, name, due_at))
        )

    async def unsubmitted(self, claimed_before: float) -> list[Fire]:
        rows = await self._tables.run(
            "read unsubmitted fires",
            lambda c: c.execute(_SQL.unsubmitted, (claimed_before,)).fetchall(),
        )
        return [fire_of(row) for row in rows]

    async def fires(self, name: str | None = None, *, limit: int = 50) -> list[Fire]:
        if name is None:
            rows = await self._tables.run(
                "list fires", lambda c: c.execute(_SQL.fires, (limit,)).fetchall()
            )
        else:
            rows = await self._tables.run(
                "list fires", lambda c: c.execute(_SQL.fires_of, (name, limit)).fetchall()
            )
        return [fire_of(row) for row in rows]

    async def aclose(self) -> None:
        await self._tables.close()


class _TakenError(Exception):
    """The fire's row exists: the transaction that moved ``next_due`` is rolled back."""


def _with_enabled(schedule: Schedule, enabled: bool) -> Schedule:
    return dataclasses.replace(schedule, enabled=enabled)

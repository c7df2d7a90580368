"""Schedules in this process's memory: for tests and examples; gone when the process ends."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import replace

from keel.schedules._model import Fire, Schedule, ScheduleState
from keel.schedules._store import ScheduleStore, exists, kept_next_due

__all__ = ["MemoryScheduleStore"]


class MemoryScheduleStore(ScheduleStore):
    """A :class:`ScheduleStore` held in memory; its schedulers must share this object."""

    def __init__(self) -> None:
        self._schedules: dict[str, ScheduleState] = {}
        self._fires: dict[tuple[str, float], Fire] = {}
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"MemoryScheduleStore(schedules={len(self._schedules)})"

    async def _add(self, schedule: Schedule, now: float, replace_it: bool) -> ScheduleState:
        async with self._lock:
            old = self._schedules.get(schedule.name)
            if old is not None and not replace_it:
                raise exists(schedule.name)
            state = ScheduleState(
                schedule=schedule,
                next_due=kept_next_due(old, schedule, now),
                last_due=None if old is None else old.last_due,
                last_run_id=None if old is None else old.last_run_id,
                created_at=now if old is None else old.created_at,
                updated_at=now,
            )
            self._schedules[schedule.name] = state
            return state

    async def get(self, name: str) -> ScheduleState | None:
        return self._schedules.get(name)

    async def all(self) -> list[ScheduleState]:
        return [self._schedules[name] for name in sorted(self._schedules)]

    async def remove(self, name: str) -> bool:
        async with self._lock:
            found = self._schedules.pop(name, None)
            for key, fire in list(self._fires.items()):
                if fire.name == name and fire.status == "submitted":
                    del self._fires[key]
            return found is not None

    async def _set_enabled(self, name: str, enabled: bool, now: float) -> ScheduleState | None:
        async with self._lock:
            old = self._schedules.get(name)
            if old is None:
                return None
            next_due = old.schedule.next_after(now) if enabled else old.next_due
            state = replace(
                old,
                schedule=replace(old.schedule, enabled=enabled),
                next_due=next_due,
                updated_at=now,
            )
            self._schedules[name] = state
            return state

    def _enabled(self, agents: Collection[str] | None) -> list[ScheduleState]:
        return [
            s
            for s in self._schedules.values()
            if s.schedule.enabled and (agents is None or s.schedule.agent in agents)
        ]

    async def due(self, now: float, agents: Collection[str] | None = None) -> list[ScheduleState]:
        found = [s for s in self._enabled(agents) if s.next_due <= now]
        return sorted(found, key=lambda s: (s.next_due, s.schedule.name))

    async def earliest(self, agents: Collection[str] | None = None) -> float | None:
        return min((s.next_due for s in self._enabled(agents)), default=None)

    async def claim(self, state: ScheduleState, fire: Fire, next_due: float) -> bool:
        async with self._lock:
            current = self._schedules.get(state.schedule.name)
            if current is None or not current.schedule.enabled:
                return False
            if current.next_due != state.next_due:
                return False
            if (fire.name, fire.due_at) in self._fires:
                return False
            self._schedules[fire.name] = replace(
                current,
                next_due=next_due,
                last_due=fire.due_at,
                last_run_id=fire.run_id,
                updated_at=fire.claimed_at,
            )
            self._fires[(fire.name, fire.due_at)] = fire
            return True

    async def mark_submitted(self, name: str, due_at: float, *, now: float) -> None:
        async with self._lock:
            fire = self._fires.get((name, due_at))
            if fire is not None:
                self._fires[(name, due_at)] = replace(fire, status="submitted", submitted_at=now)

    async def unsubmitted(self, claimed_before: float) -> list[Fire]:
        found = [
            f
            for f in self._fires.values()
            if f.status == "claimed" and f.claimed_at < claimed_before
        ]
        return sorted(found, key=lambda f: (f.due_at, f.name))

    async def fires(self, name: str | None = None, *, limit: int = 50) -> list[Fire]:
        found = [f for f in self._fires.values() if name is None or f.name == name]
        return sorted(found, key=lambda f: (-f.due_at, f.name))[:limit]

    async def aclose(self) -> None:
        return None

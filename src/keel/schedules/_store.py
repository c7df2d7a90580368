"""Where schedules and their fires are kept: :class:`ScheduleStore`, and what every backend
shares.

A fire is taken by one compare-and-set: the schedule's ``next_due`` moves from the due time
the scheduler read to the next one, and the fire's row (unique per schedule and due time) is
written, in one transaction. A second scheduler that read the same ``next_due`` finds it moved
and takes nothing; so a due time is taken once, across processes and hosts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from types import TracebackType
from typing import Self

from keel.errors import ConfigurationError
from keel.schedules._model import Fire, Schedule, ScheduleState

__all__ = ["ScheduleStore", "exists", "kept_next_due", "unknown"]


def unknown(name: str) -> ConfigurationError:
    """The error for a schedule name that is not stored."""
    return ConfigurationError(
        f"there is no schedule named {name!r}; list them with `keel schedules list`"
    )


class ScheduleStore(ABC):
    """Schedules and their fires, in memory, SQLite or PostgreSQL beside the journal."""

    async def add(self, schedule: Schedule, *, now: float, replace: bool = False) -> ScheduleState:
        """Store ``schedule``; its first fire is the first due time after ``now``.

        A name that exists raises :class:`keel.errors.ConfigurationError`, unless
        ``replace``: then the stored one is replaced, keeping its next due time when the cron
        expression and time zone did not change (so replacing on every start, as a
        deployment that defines schedules in code does, neither skips nor repeats a fire).
        """
        if not isinstance(schedule, Schedule):
            raise ConfigurationError(
                f"add() takes a Schedule, got {type(schedule).__name__}; e.g. "
                "Schedule('nightly', '0 2 * * *', agent='support', input='...')"
            )
        return await self._add(schedule, now, replace)

    @abstractmethod
    async def _add(self, schedule: Schedule, now: float, replace: bool) -> ScheduleState:
        """Insert (or replace) under the backend's lock."""

    @abstractmethod
    async def get(self, name: str) -> ScheduleState | None:
        """The stored schedule named ``name``, if any."""

    @abstractmethod
    async def all(self) -> list[ScheduleState]:
        """Every stored schedule, by name."""

    @abstractmethod
    async def remove(self, name: str) -> bool:
        """Delete a schedule (its fires that were submitted too); whether it existed."""

    async def set_enabled(self, name: str, enabled: bool, *, now: float) -> ScheduleState:
        """Pause (``False``) or resume (``True``) a schedule. Resuming sets its next due time
        to the first one after ``now``: the times it missed while paused are not fired.
        Raises :class:`keel.errors.ConfigurationError` for an unknown name."""
        found = await self._set_enabled(name, enabled, now)
        if found is None:
            raise unknown(name)
        return found

    @abstractmethod
    async def _set_enabled(self, name: str, enabled: bool, now: float) -> ScheduleState | None:
        """Change the flag (and ``next_due`` on resume); ``None`` if unknown."""

    @abstractmethod
    async def due(self, now: float, agents: Collection[str] | None = None) -> list[ScheduleState]:
        """Enabled schedules whose next due time is at or before ``now`` (of ``agents``
        only, when given), earliest first."""

    @abstractmethod
    async def earliest(self, agents: Collection[str] | None = None) -> float | None:
        """The earliest next due time of the enabled schedules (of ``agents``)."""

    @abstractmethod
    async def claim(self, state: ScheduleState, fire: Fire, next_due: float) -> bool:
        """Take ``fire`` if the schedule's next due time is still ``state.next_due``: move it
        to ``next_due`` and record the fire, atomically. ``False``: another scheduler took
        it (or the schedule changed meanwhile)."""

    @abstractmethod
    async def mark_submitted(self, name: str, due_at: float, *, now: float) -> None:
        """Record that the fire's run is in the store."""

    @abstractmethod
    async def unsubmitted(self, claimed_before: float) -> list[Fire]:
        """Fires still ``claimed`` that were claimed before ``claimed_before``: their
        scheduler may have died before submitting them."""

    @abstractmethod
    async def fires(self, name: str | None = None, *, limit: int = 50) -> list[Fire]:
        """Fires, latest due time first (of schedule ``name``, when given)."""

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


def kept_next_due(old: ScheduleState | None, schedule: Schedule, now: float) -> float:
    """The next due time of an added (or replaced) schedule."""
    if old is not None and (old.schedule.cron, old.schedule.timezone) == (
        schedule.cron,
        schedule.timezone,
    ):
        return old.next_due
    return schedule.next_after(now)


def exists(name: str) -> ConfigurationError:
    """The error for adding a name that is stored."""
    return ConfigurationError(
        f"a schedule named {name!r} exists; remove it first (`keel schedules remove {name}`) "
        "or replace it (ScheduleStore.add(..., replace=True))"
    )

"""What a schedule is, and the times its cron expression names.

A :class:`Schedule` is validated when it is made: a cron expression croniter cannot read or a
time zone the system does not know is refused with a message naming it. Times are seconds
since the epoch; the cron expression is read in the schedule's time zone, so ``0 9 * * *``
in ``Europe/Paris`` fires at 9:00 Paris time, summer and winter.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from keel.errors import ConfigurationError, MissingExtraError

__all__ = ["Fire", "FireStatus", "Fired", "Schedule", "ScheduleState", "planned_run_id"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


def _cron() -> Any:
    """croniter's class, imported on first use: ``keel`` (and its command) work without the
    ``server`` extra until a schedule is made."""
    try:
        from croniter import croniter  # type: ignore[import-untyped]
    except ImportError:
        raise MissingExtraError(
            package="croniter", extra="server", feature="Scheduled runs"
        ) from None
    return croniter


def _zone(name: str, schedule: str = "") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        whose = f"schedule {schedule!r}: " if schedule else ""
        raise ConfigurationError(
            f"{whose}timezone {name!r} is not a known IANA time zone; use a name such as "
            "'UTC', 'Europe/Paris' or 'America/New_York'"
        ) from None


@dataclass(frozen=True, slots=True)
class Schedule:
    """Runs of an agent at the times a cron expression names.

    Args:
        name: Unique name (letters, digits, ``_ . : -``; up to 100 characters).
        cron: A cron expression: five fields (minute hour day month weekday), an optional
            sixth for seconds, or ``@hourly``, ``@daily``...
        agent: The agent's name; a scheduler fires only schedules of agents its runtime
            knows (``Runtime(agents=[...])``).
        input: The message each run gets.
        thread: Every run continues this thread; ``None``: each fire gets a thread of its own.
        tenant: The tenant the runs are for (checks, budgets, webhooks' tenant filter).
        user: The user the runs are for.
        timezone: The IANA time zone the cron expression is read in.
        enabled: ``False`` keeps the schedule without firing it (paused).
    """

    name: str
    cron: str
    agent: str
    input: str
    thread: str | None = None
    tenant: str | None = None
    user: str | None = None
    timezone: str = "UTC"
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigurationError(
                f"a schedule's name is 1 to 100 letters, digits or '_.:-' (starting with a "
                f"letter or digit), got {self.name!r}; e.g. 'daily-report'"
            )
        if not isinstance(self.cron, str) or not _cron().is_valid(self.cron):
            raise ConfigurationError(
                f"schedule {self.name!r}: the cron expression {self.cron!r} is not valid; write "
                "five fields (minute hour day-of-month month day-of-week), e.g. '*/5 * * * *' "
                "for every 5 minutes or '0 9 * * 1-5' for 9:00 on weekdays"
            )
        _zone(self.timezone, self.name)
        if not isinstance(self.agent, str) or not self.agent.strip():
            raise ConfigurationError(
                f"schedule {self.name!r}: agent must be the name of an agent, got {self.agent!r}"
            )
        if not isinstance(self.input, str):
            raise ConfigurationError(
                f"schedule {self.name!r}: input must be a string (the message each run gets), "
                f"got {type(self.input).__name__}"
            )
        for field_name in ("thread", "tenant", "user"):
            value = getattr(self, field_name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigurationError(
                    f"schedule {self.name!r}: {field_name} must be a non-empty string or None, "
                    f"got {value!r}"
                )

    def next_after(self, when: float) -> float:
        """The first time after ``when`` that the cron expression names."""
        start = datetime.fromtimestamp(when, _zone(self.timezone))
        return float(_cron()(self.cron, start).get_next(float))

    def latest_at_or_before(self, when: float) -> float:
        """The last time at or before ``when`` that the cron expression names."""
        zone = _zone(self.timezone)
        before = float(_cron()(self.cron, datetime.fromtimestamp(when, zone)).get_prev(float))
        following = float(_cron()(self.cron, datetime.fromtimestamp(before, zone)).get_next(float))
        return following if following <= when else before

    def times_between(self, start: float, end: float, *, cap: int = 10_000) -> int:
        """How many times in ``[start, end)`` the expression names (at most ``cap``)."""
        zone = _zone(self.timezone)
        found, moment = 0, start
        if self.latest_at_or_before(start) == start and start < end:
            found = 1
        it = _cron()(self.cron, datetime.fromtimestamp(moment, zone))
        while found < cap:
            moment = float(it.get_next(float))
            if moment >= end:
                break
            found += 1
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleState:
    """A stored schedule and where it stands.

    Attributes:
        schedule: What it runs, and when.
        next_due: The next time it fires (seconds since the epoch); for a paused schedule,
            the time it would have fired.
        last_due: The time of its latest fire, if any.
        last_run_id: The run that fire submitted.
        created_at: When it was added.
        updated_at: When it last changed (added, paused, resumed, fired).
    """

    schedule: Schedule
    next_due: float
    last_due: float | None = None
    last_run_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


FireStatus = Literal["claimed", "submitted"]
"""``claimed``: a scheduler took this due time and is submitting its run (or died doing so:
another one submits it after the grace period); ``submitted``: the run is in the store."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fire:
    """One due time of a schedule, taken by one scheduler: unique per (schedule, due time).

    It carries what the run is made of, so that a fire whose scheduler died before submitting
    it is submitted by another one even if the schedule changed or was removed meanwhile.
    """

    name: str
    due_at: float
    run_id: str
    agent: str
    input: str
    thread: str | None
    tenant: str | None
    user: str | None
    status: FireStatus
    claimed_by: str
    claimed_at: float
    submitted_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fired:
    """What a scheduler's tick did for one schedule.

    Attributes:
        name: The schedule.
        due_at: The due time it fired for.
        run_id: The run (submitted, queued for a worker).
        skipped: Older due times missed while no scheduler ran, not fired (the catch-up
            policy fires only the latest one).
        recovered: A fire another scheduler claimed and did not submit (it died).
    """

    name: str
    due_at: float
    run_id: str
    skipped: int = 0
    recovered: bool = False


def planned_run_id(name: str, due_at: float) -> str:
    """The run id of a schedule's fire: the same for the same schedule and due time, in the
    format of every run id (``run_`` + 12 hex digits of milliseconds + 16 hex digits), so a
    second submit of one fire is refused by the store as a duplicate."""
    digest = hashlib.sha256(f"{name}\n{due_at!r}".encode()).hexdigest()[:16]
    return f"run_{int(due_at * 1000):012x}{digest}"

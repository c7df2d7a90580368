"""Schedules and fires as table rows: the columns both SQL backends share, and the
conversions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from keel.schedules._model import Fire, FireStatus, Schedule, ScheduleState

__all__ = ["FIRE_COLUMNS", "SCHEDULE_COLUMNS", "fire_of", "fire_row", "state_of", "state_row"]

SCHEDULE_COLUMNS = (
    "name",
    "cron",
    "agent",
    "input",
    "thread_id",
    "tenant",
    "user_name",
    "timezone",
    "enabled",
    "next_due",
    "last_due",
    "last_run_id",
    "created_at",
    "updated_at",
)
FIRE_COLUMNS = (
    "name",
    "due_at",
    "run_id",
    "agent",
    "input",
    "thread_id",
    "tenant",
    "user_name",
    "status",
    "claimed_by",
    "claimed_at",
    "submitted_at",
)


def state_row(state: ScheduleState) -> tuple[Any, ...]:
    """The row of a stored schedule, in :data:`SCHEDULE_COLUMNS` order."""
    s = state.schedule
    return (
        s.name,
        s.cron,
        s.agent,
        s.input,
        s.thread,
        s.tenant,
        s.user,
        s.timezone,
        bool(s.enabled),
        state.next_due,
        state.last_due,
        state.last_run_id,
        state.created_at,
        state.updated_at,
    )


def state_of(row: Sequence[Any]) -> ScheduleState:
    """A stored schedule from its row."""
    (name, cron, agent, text, thread, tenant, user, zone, enabled, next_due, last_due, last_run,
     created, updated) = row  # fmt: skip
    schedule = Schedule(
        name,
        cron,
        agent,
        text,
        thread=thread,
        tenant=tenant,
        user=user,
        timezone=zone,
        enabled=bool(enabled),
    )
    return ScheduleState(
        schedule=schedule,
        next_due=float(next_due),
        last_due=None if last_due is None else float(last_due),
        last_run_id=last_run,
        created_at=float(created),
        updated_at=float(updated),
    )


def fire_row(fire: Fire) -> tuple[Any, ...]:
    """The row of a fire, in :data:`FIRE_COLUMNS` order."""
    return (
        fire.name,
        fire.due_at,
        fire.run_id,
        fire.agent,
        fire.input,
        fire.thread,
        fire.tenant,
        fire.user,
        fire.status,
        fire.claimed_by,
        fire.claimed_at,
        fire.submitted_at,
    )


def fire_of(row: Sequence[Any]) -> Fire:
    """A fire from its row."""
    (name, due_at, run_id, agent, text, thread, tenant, user, status, by, claimed_at,
     submitted_at) = row  # fmt: skip
    return Fire(
        name=name,
        due_at=float(due_at),
        run_id=run_id,
        agent=agent,
        input=text,
        thread=thread,
        tenant=tenant,
        user=user,
        status=cast(FireStatus, status),
        claimed_by=by,
        claimed_at=float(claimed_at),
        submitted_at=None if submitted_at is None else float(submitted_at),
    )

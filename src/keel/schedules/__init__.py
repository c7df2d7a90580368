"""Scheduled runs: an agent run at the times a cron expression names, durable, fired once
across any number of scheduler processes.

::

    nightly = Schedule("nightly-report", "0 2 * * *", agent="reporter", input="Summarize today")
    async with Runtime(agents=[reporter]) as runtime:
        async with Scheduler(runtime, schedules=[nightly]):
            ...  # runs are submitted to the queue when due; workers drive them

Schedules live beside the journal (memory, SQLite or PostgreSQL: :func:`open_schedule_store`)
and can be managed from the command line (``keel schedules add/list/remove/pause/resume``).
Each due time is taken by one scheduler with a compare-and-set, and its run gets an id fixed
by the schedule's name and due time, so a scheduler that dies mid-fire is replaced without a
lost or doubled run. Missed due times (nothing ran) fire once, for the latest of them.

``PostgresScheduleStore`` is imported on first use, so ``keel.schedules`` works without the
``postgres`` extra; croniter comes with the ``server`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.schedules._memory import MemoryScheduleStore
from keel.schedules._model import Fire, Fired, FireStatus, Schedule, ScheduleState, planned_run_id
from keel.schedules._open import open_schedule_store
from keel.schedules._scheduler import Scheduler
from keel.schedules._sqlite import SQLiteScheduleStore
from keel.schedules._store import ScheduleStore

if TYPE_CHECKING:
    from keel.schedules._postgres import PostgresScheduleStore

__all__ = [
    "Fire",
    "FireStatus",
    "Fired",
    "MemoryScheduleStore",
    "PostgresScheduleStore",
    "SQLiteScheduleStore",
    "Schedule",
    "ScheduleState",
    "ScheduleStore",
    "Scheduler",
    "open_schedule_store",
    "planned_run_id",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresScheduleStore":
        from keel.schedules._postgres import PostgresScheduleStore

        return PostgresScheduleStore
    raise AttributeError(f"module 'keel.schedules' has no attribute {name!r}")

"""Scheduled runs stored in the database: ``keel schedules add``, ``list``, ``remove``,
``pause`` and ``resume``.

Schedules are kept beside the runs (same database); a scheduler (the server, or
``keel.schedules.Scheduler`` in an app) fires them: each due time submits one run to the
queue, for workers to drive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from keel._cli._common import DbOption, JsonOption, dumps, fail, guarded, stdout
from keel._cli.timeline import format_time
from keel._settings import KeelSettings
from keel.schedules import Schedule, ScheduleState, ScheduleStore, open_schedule_store

__all__ = ["schedules_app"]

T = TypeVar("T")

schedules_app = typer.Typer(
    help="Scheduled runs: an agent run at the times a cron expression names.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The schedule's name.")]


def _with_store(db: str | None, work: Callable[[ScheduleStore], Awaitable[T]]) -> T:
    settings = KeelSettings.from_environ()
    target = db if db is not None else settings.db

    async def main() -> T:
        store = open_schedule_store(target, schema=settings.db_schema)
        try:
            return await work(store)
        finally:
            await store.aclose()

    return guarded(lambda: asyncio.run(main()))


def _as_dict(state: ScheduleState) -> dict[str, object]:
    s = state.schedule
    return {
        "name": s.name,
        "cron": s.cron,
        "timezone": s.timezone,
        "agent": s.agent,
        "input": s.input,
        "thread": s.thread,
        "tenant": s.tenant,
        "user": s.user,
        "enabled": s.enabled,
        "next_due": state.next_due if s.enabled else None,
        "last_due": state.last_due,
        "last_run_id": state.last_run_id,
    }


def _line(state: ScheduleState) -> str:
    s = state.schedule
    when = f"next {format_time(state.next_due)}" if s.enabled else "paused"
    last = "" if state.last_run_id is None else f", last run {state.last_run_id}"
    zone = "" if s.timezone == "UTC" else f" ({s.timezone})"
    return f"{s.name}  '{s.cron}'{zone}  agent {s.agent}  {when}{last}"


@schedules_app.command("add")
def add(
    name: NameArgument,
    *,
    cron: Annotated[
        str, typer.Option("--cron", help="When: a cron expression, e.g. '*/5 * * * *'.")
    ],
    agent: Annotated[str, typer.Option("--agent", help="The agent's name.")],
    input: Annotated[str, typer.Option("--input", help="The message each run gets.")],
    thread: Annotated[
        str | None,
        typer.Option("--thread", help="Every run continues this thread (default: one each)."),
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="The runs' tenant.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="The runs' user.")] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", help="The time zone the cron is read in.")
    ] = "UTC",
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a schedule of the same name.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Add a schedule; it first fires at the first due time from now."""
    schedule = guarded(
        lambda: Schedule(
            name,
            cron,
            agent,
            input,
            thread=thread,
            tenant=tenant,
            user=user,
            timezone=timezone,
        )
    )
    state = _with_store(db, lambda s: s.add(schedule, now=time.time(), replace=replace))
    stdout().print(f"added {_line(state)}", markup=False)


@schedules_app.command("list")
def list_schedules(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every stored schedule with its next due time."""
    states = _with_store(db, lambda s: s.all())
    out = stdout()
    if as_json:
        out.print(dumps([_as_dict(s) for s in states]), markup=False)
        return
    if not states:
        out.print("no schedules (add one with keel schedules add)", markup=False)
    for state in states:
        out.print(_line(state), markup=False)


@schedules_app.command("remove")
def remove(name: NameArgument, db: DbOption = None) -> None:
    """Delete a schedule."""
    if not _with_store(db, lambda s: s.remove(name)):
        fail(f"there is no schedule named {name!r}; list them with keel schedules list")
    stdout().print(f"removed schedule {name}", markup=False)


@schedules_app.command("pause")
def pause(name: NameArgument, db: DbOption = None) -> None:
    """Stop firing a schedule until it is resumed."""
    state = _with_store(db, lambda s: s.set_enabled(name, False, now=time.time()))
    stdout().print(f"paused {_line(state)}", markup=False)


@schedules_app.command("resume")
def resume(name: NameArgument, db: DbOption = None) -> None:
    """Fire a paused schedule again, from its next due time (times missed while paused are
    not fired)."""
    state = _with_store(db, lambda s: s.set_enabled(name, True, now=time.time()))
    stdout().print(f"resumed {_line(state)}", markup=False)

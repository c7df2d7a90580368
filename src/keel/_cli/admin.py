"""Housekeeping: ``keel db upgrade`` and ``keel threads delete``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from keel._cli._common import DbOption, JsonOption, call, dumps, fail, make_runtime, stdout
from keel._cli.timeline import format_time
from keel._runtime.runtime import Runtime

__all__ = ["breakers_app", "db_app", "threads_app"]

db_app = typer.Typer(help="The database that keeps runs.", no_args_is_help=True)
threads_app = typer.Typer(help="Conversation threads.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(db: DbOption = None) -> None:
    """Apply pending schema migrations (numbered, forward-only). Keel also applies them on
    first use unless the store was opened with auto_migrate=False."""

    async def work(runtime: Runtime) -> list[int]:
        upgrade = getattr(runtime.store, "upgrade", None)
        if upgrade is None:
            fail(f"{type(runtime.store).__name__} has no schema to upgrade")
        applied: list[int] = await upgrade()
        return applied

    applied = call(db, work)
    if applied:
        stdout().print(f"applied migration(s) {', '.join(map(str, applied))}", markup=False)
    else:
        stdout().print("the schema is up to date", markup=False)


@threads_app.command("delete")
def delete_thread(
    thread_id: Annotated[str, typer.Argument(help="The thread to delete.")],
    db: DbOption = None,
) -> None:
    """Delete a thread's conversation and all its runs."""
    deleted = call(db, lambda rt: rt.delete_thread(thread_id))
    stdout().print(
        f"deleted thread {thread_id} and {deleted} run{'' if deleted == 1 else 's'}", markup=False
    )


breakers_app = typer.Typer(help="Circuit breakers of the models.", no_args_is_help=True)


def _require_shared_breakers(db: str | None) -> None:
    """Breakers kept per process cannot be seen or changed from another process: say so."""
    runtime = make_runtime(db)
    if runtime.breakers is None or not runtime.settings.redis_url:
        fail(
            "circuit breakers are kept per process unless they are shared through Redis; set "
            "KEEL_REDIS_URL (e.g. redis://127.0.0.1:6379/0) to share them and see them here"
        )


@breakers_app.command("list")
def list_breakers(db: DbOption = None, as_json: JsonOption = False) -> None:
    """The state of every model's circuit breaker, as shared through Redis."""
    _require_shared_breakers(db)
    statuses = call(db, lambda rt: rt.breaker_statuses())
    out = stdout()
    if as_json:
        out.print(dumps([asdict(s) for s in statuses]), markup=False)
        return
    if not statuses:
        out.print("no breaker has recorded a call yet", markup=False)
        return
    for status in statuses:
        out.print(_breaker_line(status), markup=False)


def _breaker_line(status: Any) -> str:
    line = f"{status.name}  {status.state}  {status.consecutive_failures} failures in a row"
    if status.state != "closed" and status.retry_at is not None:
        line += f", trial call at {format_time(status.retry_at)}"
    return line


@breakers_app.command("reset")
def reset_breaker(
    name: Annotated[
        str, typer.Argument(help="The model whose breaker to close, e.g. openai:gpt-4o.")
    ],
    db: DbOption = None,
) -> None:
    """Close a model's breaker now, forgetting its failures (breakers shared through Redis)."""
    _require_shared_breakers(db)

    async def work(runtime: Runtime) -> None:
        assert runtime.breakers is not None  # checked above
        await runtime.breakers.reset(name)

    call(db, work)
    stdout().print(f"breaker of {name} closed", markup=False)

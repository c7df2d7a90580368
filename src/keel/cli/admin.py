"""Housekeeping: ``keel db upgrade`` and ``keel threads delete``."""

from __future__ import annotations

from typing import Annotated

import typer

from keel.cli._common import DbOption, call, fail, stdout
from keel.runtime.runtime import Runtime

__all__ = ["db_app", "threads_app"]

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

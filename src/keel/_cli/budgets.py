"""Cost budgets stored in the database: ``keel budgets list``, ``set`` and ``remove``.

Limits set here are kept beside the runs (same database) and beat the budgets an app defines
in code for the same scope and key. Every process sees a change at its next model call:
raising a limit lets runs paused on it go on once resumed (``keel resume RUN_ID``). With
``KEEL_AUDIT=1`` each change is recorded in the audit log (``budget.changed``, by ``--by``).
"""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, TypeVar

import typer

from keel._cli._common import DbOption, JsonOption, dumps, fail, guarded, stdout
from keel._cli.timeline import format_time
from keel._settings import KeelSettings
from keel.audit import AuditEntry, open_audit_log
from keel.budgets import (
    BudgetLedger,
    BudgetStatus,
    Reservation,
    Scope,
    Window,
    open_budget_ledger,
)
from keel.budgets._model import SCOPES, WINDOWS

__all__ = ["budgets_app"]

T = TypeVar("T")

budgets_app = typer.Typer(
    help="Cost budgets: limits stored in the database, spend, and reservations of calls under way.",
    no_args_is_help=True,
)

ScopeArgument = Annotated[str, typer.Argument(help=f"One of: {', '.join(SCOPES)}.")]
KeyArgument = Annotated[
    str,
    typer.Argument(help="The agent's name, the user, the tenant; 'global' for the global scope."),
]

_NOTE = (
    "budgets defined in code (Budget(...) in an app) are not shown: this command lists the "
    "limits stored with `keel budgets set`, their spend in the current window, and unsettled "
    "reservations"
)


ByOption = Annotated[
    str | None,
    typer.Option("--by", help="Who makes the change, for the audit log (default: your login)."),
]


def _with_ledger(
    db: str | None,
    work: Callable[[BudgetLedger], Awaitable[T]],
    *,
    audit: Callable[[T], AuditEntry | None] | None = None,
) -> T:
    """Run ``work`` on the ledger of ``db`` (default: settings), errors as one line; then
    record what ``audit`` makes of its result in the audit log, when the settings keep one
    (``KEEL_AUDIT=1``)."""
    settings = KeelSettings.from_environ()
    target = db if db is not None else settings.db

    async def main() -> T:
        ledger = open_budget_ledger(target, schema=settings.db_schema)
        try:
            done = await work(ledger)
        finally:
            await ledger.aclose()
        entry = None if audit is None or not settings.audit else audit(done)
        if entry is not None:
            log = open_audit_log(target, schema=settings.db_schema)
            try:
                await log.append(entry)
            finally:
                await log.aclose()
        return done

    return guarded(lambda: asyncio.run(main()))


def _change(scope: str, key: str, by: str | None, **details: object) -> AuditEntry:
    return AuditEntry(
        actor="cli",
        action="budget.changed",
        subject=f"{scope}:{key}",
        user=by or getpass.getuser(),
        details=dict(details),
    )


def _scope(scope: str) -> Scope:
    if scope not in SCOPES:
        fail(f"SCOPE must be one of {', '.join(SCOPES)}, got '{scope}'")
    return scope


@budgets_app.command("list")
def list_budgets(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Stored limits with this window's spend and reservations, and unsettled reservations."""
    now = time.time()

    async def work(ledger: BudgetLedger) -> tuple[list[BudgetStatus], list[Reservation]]:
        return await ledger.statuses(now=now), await ledger.reservations()

    statuses, reservations = _with_ledger(db, work)
    out = stdout()
    if as_json:
        data = {
            "budgets": [asdict(s) for s in statuses],
            "reservations": [asdict(r) for r in reservations],
            "note": _NOTE,
        }
        out.print(dumps(data), markup=False)
        return
    if not statuses:
        out.print("no stored budget limit", markup=False)
    for s in statuses:
        period = "in total" if s.window == "total" else f"per {s.window}"
        out.print(
            f"{s.scope} {s.key}  ${s.limit_usd:,.2f} {period}: "
            f"spent ${s.spent_usd:,.6f}, reserved ${s.reserved_usd:,.6f}, "
            f"remaining ${s.remaining_usd:,.6f}",
            markup=False,
        )
    for r in reservations:
        out.print(
            f"reservation {r.reservation_id} of run {r.run_id}: ${r.amount_usd:,.6f} "
            f"since {format_time(r.created_at)} ({', '.join(r.budgets)})",
            markup=False,
        )
    out.print(f"note: {_NOTE}", markup=False, style="dim")


@budgets_app.command("set")
def set_budget(
    scope: ScopeArgument,
    key: KeyArgument,
    limit_usd: Annotated[float, typer.Argument(help="The limit in US dollars.", min=0)],
    *,
    window: Annotated[
        str,
        typer.Option("--window", "-w", help=f"One of: {', '.join(WINDOWS)} (UTC calendar)."),
    ] = "day",
    by: ByOption = None,
    db: DbOption = None,
) -> None:
    """Store a limit for one key of a scope; it beats the code's budgets for that key."""
    checked = _scope(scope)
    if window not in WINDOWS:
        fail(f"--window must be one of {', '.join(WINDOWS)}, got '{window}'")
    period_of: Window = window
    _with_ledger(
        db,
        lambda ledger: ledger.set_limit(checked, key, limit_usd, period_of),
        audit=lambda _: _change(scope, key, by, limit_usd=limit_usd, window=window),
    )
    period = "in total" if window == "total" else f"per {window}"
    stdout().print(
        f"{scope} {key}: limit ${limit_usd:,.2f} {period} (resume paused runs with keel resume "
        "RUN_ID)",
        markup=False,
    )


@budgets_app.command("remove")
def remove_budget(
    scope: ScopeArgument, key: KeyArgument, by: ByOption = None, db: DbOption = None
) -> None:
    """Forget a stored limit: the budgets defined in code apply again."""
    checked = _scope(scope)
    removed = _with_ledger(
        db,
        lambda ledger: ledger.remove_limit(checked, key),
        audit=lambda removed: _change(scope, key, by, removed=True) if removed else None,
    )
    if not removed:
        fail(f"no stored limit for {scope} {key}; see keel budgets list")
    stdout().print(f"{scope} {key}: stored limit removed", markup=False)

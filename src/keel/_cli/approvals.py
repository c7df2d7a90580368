"""People deciding on tool calls: ``keel approvals list``, ``keel approve``, ``keel reject``
and ``keel confirm``. Each decision is journaled with who made it and when. When no decision is
left, the run goes back to the queue: with ``--app`` (or ``KEEL_APP``) this command continues
it at once; otherwise a worker does (``keel worker APP``), and the command returns at once."""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import typer

from keel._cli._common import (
    AppOption,
    DbOption,
    JsonOption,
    agent_of_run,
    app_of,
    call,
    dumps,
    fail,
    report,
    stderr,
    stdout,
)
from keel._core.events import PendingCall
from keel._runtime.result import RunResult
from keel._runtime.runtime import Runtime
from keel.ports import RunRecord

__all__ = ["approvals_app", "register_decisions"]

approvals_app = typer.Typer(help="Runs waiting for a person's decision.", no_args_is_help=True)

RunArgument = Annotated[str, typer.Argument(help="The run waiting for a decision.")]
CallOption = Annotated[
    str | None,
    typer.Option("--call", "-c", help="The call to decide on; needed when several wait."),
]
ByOption = Annotated[
    str | None,
    typer.Option("--by", help="Who decides, kept in the journal [default: your user name]."),
]
NoResume = Annotated[
    bool,
    typer.Option(
        "--no-resume", help="Record the decision and queue the run for a worker; do not drive it."
    ),
]


def _who(by: str | None) -> str:
    return by if by else getpass.getuser()


@approvals_app.command("list")
def list_pending(
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Runs waiting for a decision, with each call that waits."""

    async def work(runtime: Runtime) -> list[tuple[RunRecord, list[PendingCall]]]:
        records = await runtime.waiting_runs()  # all of them: no silent cap
        return [(r, await runtime.pending_calls(r.run_id)) for r in records]

    waiting = call(db, work)
    out = stdout()
    if as_json:
        data = [
            {
                "run_id": record.run_id,
                "agent": record.agent,
                "calls": [
                    {
                        "call_id": p.call.id,
                        "tool": p.call.name,
                        "arguments": p.call.arguments,
                        "kind": p.kind,
                        "reason": p.reason,
                        "check": p.check,
                        "idempotency_key": p.idempotency_key,
                    }
                    for p in pending
                ],
            }
            for record, pending in waiting
        ]
        out.print(dumps(data), markup=False)
        return
    if not waiting:
        out.print("no run is waiting for a decision", markup=False)
        return
    for record, pending in waiting:
        out.print(f"{record.run_id}  ({record.agent}): {record.input}", markup=False)
        for p in pending:
            why = {
                "approval": "needs approval",
                "interrupted": "was interrupted: did it happen?",
                "escalated": f"escalated by check '{p.check}'",
            }[p.kind]
            detail = f" ({p.reason})" if p.reason else ""
            out.print(
                f"  call {p.call.id}: {p.call.name}({p.call.arguments}) {why}{detail}",
                markup=False,
            )
    out.print(f"{len(waiting)} run(s) waiting", markup=False)


def _decide(db: str | None, run_id: str, app: str | None, as_json: bool, **decision: Any) -> None:
    kind = decision.pop("kind")
    named = app_of(app)
    if kind == "approve" and decision.get("arguments") is not None and named is None:
        fail(
            "--args needs the run's agent to check the edited arguments against the tool's "
            "schema: pass --app path/to/file.py (or set KEEL_APP)"
        )
    drive = decision["resume"] and named is not None

    async def work(runtime: Runtime) -> RunResult[Any]:
        chosen = await agent_of_run(runtime, run_id, app) if named is not None else None
        method: dict[str, Any] = {
            "approve": runtime.approve,
            "reject": runtime.reject,
            "confirm": runtime.confirm,
        }
        result: RunResult[Any] = await method[kind](
            run_id, agent=chosen, **{**decision, "resume": drive}
        )
        return result

    result = call(db, work)
    if result.status == "queued" and not as_json:
        stderr().print(
            f"decision recorded; run {run_id} is queued: a worker continues it (keel worker "
            f"APP), or continue it here with: keel resume {run_id} --app APP",
            markup=False,
        )
        raise typer.Exit(0)
    report(result, as_json=as_json)


def approve(
    run_id: RunArgument,
    *,
    call_id: CallOption = None,
    arguments: Annotated[
        str | None,
        typer.Option("--args", help="Run the call with these JSON arguments instead."),
    ] = None,
    by: ByOption = None,
    no_resume: NoResume = False,
    app: AppOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a call waiting for a person (optionally with edited arguments), or let an
    interrupted call run again; then continue the run."""
    if arguments is not None:
        try:
            parsed = json.loads(arguments)
        except ValueError as exc:
            fail(f"--args must be a JSON object: {exc}")
        if not isinstance(parsed, dict):
            fail("--args must be a JSON object, like '{\"amount_usd\": 90}'")
    _decide(
        db,
        run_id,
        app,
        as_json,
        kind="approve",
        call_id=call_id,
        by=_who(by),
        arguments=arguments,
        resume=not no_resume,
    )


def reject(
    run_id: RunArgument,
    *,
    reason: Annotated[str, typer.Option("--reason", help="Why; the model is told.")],
    call_id: CallOption = None,
    by: ByOption = None,
    no_resume: NoResume = False,
    app: AppOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Refuse a call waiting for a person; the model is told who refused it and why."""
    _decide(
        db,
        run_id,
        app,
        as_json,
        kind="reject",
        call_id=call_id,
        by=_who(by),
        reason=reason,
        resume=not no_resume,
    )


def confirm(
    run_id: RunArgument,
    *,
    result: Annotated[str, typer.Option("--result", help="What the interrupted call returned.")],
    call_id: CallOption = None,
    by: ByOption = None,
    no_resume: NoResume = False,
    app: AppOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Say that an interrupted call's effect did happen, and what it returned; the run goes
    on without calling the tool again."""
    _decide(
        db,
        run_id,
        app,
        as_json,
        kind="confirm",
        call_id=call_id,
        by=_who(by),
        result=result,
        resume=not no_resume,
    )


def register_decisions(app: typer.Typer) -> None:
    """Add ``approve``, ``reject`` and ``confirm`` to the top-level command."""
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("confirm")(confirm)

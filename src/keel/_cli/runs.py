"""``keel runs``: list, show, steps, replay, fork, diff, delete and prune runs."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import typer
from pydantic_core import to_json
from rich.table import Table

from keel._cli._common import (
    EXIT_FAILED,
    AppOption,
    DbOption,
    JsonOption,
    agent_of_run,
    call,
    dumps,
    fail,
    report,
    stdout,
)
from keel._cli.run_tree import load_tree, render_tree, tree_data
from keel._cli.timeline import (
    describe,
    format_cost,
    format_time,
    render_summary,
    render_timeline,
)
from keel._core.events import RunStatus
from keel._core.steps import RunDiff, Step
from keel._runtime.result import RunResult
from keel._runtime.runtime import Runtime
from keel._runtime.runtime_history import RunPage
from keel._runtime.stream import RunEvent
from keel._runtime.timetravel import Replay
from keel.ports import RunQuery

__all__ = ["parse_moment", "runs_app"]

runs_app = typer.Typer(
    help="List, inspect, replay, fork, compare and delete runs.", no_args_is_help=True
)

_STATUSES: tuple[RunStatus, ...] = (
    "queued",
    "running",
    "completed",
    "failed",
    "paused",
    "awaiting_approval",
    "cancelled",
)
_AGE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str | None, option: str) -> float | None:
    """``--since``/``--until``: an age (``1h``, ``2d``: that long ago) or an ISO date and time
    (UTC unless it says otherwise), as seconds since the epoch."""
    if text is None:
        return None
    match = _AGE.match(text.strip())
    if match is not None:
        return time.time() - float(match["n"]) * _SECONDS[match["unit"]]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(
            f"{option} takes an age such as 1h, 2d, 30m (s, m, h, d, w) or an ISO date such as "
            f"2026-01-31 or 2026-01-31T12:00:00+00:00; got '{text}'"
        )
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@runs_app.command("list")
def list_runs(
    *,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's runs.")] = None,
    thread: Annotated[str | None, typer.Option("--thread", "-t", help="Only this thread.")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", "-s", help=f"Only this status (repeatable): {', '.join(_STATUSES)}."
        ),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only runs for this tenant.")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only runs for this user.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Created since: an age (1h, 2d) or ISO time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Created before: an age (1h, 2d) or ISO time.")
    ] = None,
    tool: Annotated[str | None, typer.Option("--tool", help="Only runs that called it.")] = None,
    error: Annotated[
        str | None, typer.Option("--error", help="Only runs that ended with this reason code.")
    ] = None,
    min_cost: Annotated[
        float | None, typer.Option("--min-cost", min=0, help="Cost at least (US dollars).")
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", min=0, help="Cost at most (US dollars).")
    ] = None,
    min_duration: Annotated[
        float | None, typer.Option("--min-duration", min=0, help="At least this many seconds.")
    ] = None,
    max_duration: Annotated[
        float | None, typer.Option("--max-duration", min=0, help="At most this many seconds.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
    before: Annotated[
        str | None,
        typer.Option("--before", help="The page after this cursor (printed under a full page)."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first, filtered by any of the options (all must match)."""
    for value in status or []:
        if value not in _STATUSES:
            fail(f"unknown status '{value}'; use one of {', '.join(_STATUSES)}")
    query = RunQuery(
        agent=agent,
        status=None if not status else cast("tuple[RunStatus, ...]", tuple(status)),
        thread=thread,
        tenant=tenant,
        user=user,
        since=parse_moment(since, "--since"),
        until=parse_moment(until, "--until"),
        tool=tool,
        error=error,
        min_cost=min_cost,
        max_cost=max_cost,
        min_duration=min_duration,
        max_duration=max_duration,
    )

    async def work(runtime: Runtime) -> tuple[RunPage, bool]:
        page = await runtime.query_runs(query, limit=limit, before=before)
        # An empty page of an empty database says how to start instead.
        empty = not page.runs and not await runtime.store.list_runs(limit=1)
        return page, empty

    page, empty = call(db, work)
    out = stdout()
    if as_json:
        data = [{**asdict(r), "cursor": r.cursor} for r in page.runs]
        out.print(dumps(data), markup=False)
        return
    if empty:
        out.print('no runs yet; start one with: keel run path/to/agent.py:agent "Hello"')
        return
    if not page.runs:
        out.print("no runs match", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in (
        "RUN",
        "AGENT",
        "STATUS",
        "STEPS",
        "TOOLS",
        "TOKENS",
        "COST",
        "CREATED",
        "INPUT",
    ):
        table.add_column(column, no_wrap=column != "INPUT", overflow="fold")
    for r in page.runs:
        table.add_row(
            r.run_id,
            r.agent,
            r.status,
            str(r.steps),
            str(r.tool_calls),
            f"{r.input_tokens + r.output_tokens:,}",
            format_cost(r.cost_usd),
            format_time(r.created_at),
            r.input[:60],
        )
    out.print(table)
    if page.next is not None:
        out.print(f"more: --before '{page.next}'", markup=False)


@runs_app.command("follow")
def follow_run(
    run_id: Annotated[str, typer.Argument(help="The run to follow.")],
    *,
    after: Annotated[
        int, typer.Option("--after", min=0, help="Start after this event number.")
    ] = 0,
    until_finished: Annotated[
        bool,
        typer.Option("--until-finished", help="Keep following through pauses until the run ends."),
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a run's events as they happen, from any process, until it stops (finishes,
    pauses or waits for a person). Exits like keel run: 0 completed, 1 failed or cancelled,
    3 paused or waiting."""
    out = stdout()
    origin: list[float] = []

    async def work(runtime: Runtime) -> RunStatus:
        async for item in runtime.events(
            run_id, after=after, until="finished" if until_finished else "stopped"
        ):
            if not isinstance(item, RunEvent):
                continue
            event = item.event
            if as_json:
                body = json.loads(to_json(event))
                out.print(json.dumps({"seq": item.seq, "event": body}), markup=False)
                continue
            origin.append(event.at) if not origin else None
            first, *rest = describe(event)
            out.print(f"{item.seq:>5}  +{event.at - origin[0]:.3f}s  {first}", markup=False)
            for line in rest:
                out.print(f"{'':>5}  {line}", markup=False)
        return (await runtime.store.get_run(run_id)).status

    status = call(
        db,
        work,
        on_interrupt=lambda: f"stopped following run {run_id}; it goes on where it runs",
    )
    if status in ("paused", "awaiting_approval", "queued", "running"):
        raise typer.Exit(3)
    if status != "completed":
        raise typer.Exit(EXIT_FAILED)


@runs_app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="The run's id (from keel runs list).")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a run's timeline: model calls, tool calls with arguments and results, decisions,
    pauses, latency, tokens and cost; and the runs it delegated to (its children, theirs...)
    and the run it was delegated from."""

    async def work(runtime: Runtime) -> tuple[Any, list[Any], Any]:
        record = await runtime.store.get_run(run_id)
        events = await runtime.store.load(run_id)
        return record, events, await load_tree(runtime, record, events)

    record, events, (parent, tree) = call(db, work)
    out = stdout()
    if as_json:
        data = {
            "run": asdict(record),
            "events": [json.loads(to_json(e)) for e in events],
            **tree_data(parent, tree),
        }
        out.print(dumps(data), markup=False)
        return
    related = render_tree(parent, tree)
    for line in [*render_summary(record), *related, "", *render_timeline(events)]:
        out.print(line, markup=False)


def _step_line(step: Step) -> str:
    if step.failure is not None:
        return f"step {step.number}: model failed [{step.failure.error.code}]"
    parts = []
    if step.response is not None and step.response.message.content:
        text = " ".join(step.response.message.content.split())
        parts.append(f'says "{text[:80]}{"..." if len(text) > 80 else ""}"')
    for tool in step.tools:
        if tool.finished is None:
            verdict = "started, no result" if tool.started else "not run"
        elif tool.finished.error is not None:
            verdict = f"failed [{tool.finished.error.code}]"
        else:
            verdict = "done"
        parts.append(f"{tool.call.name} ({tool.call.id}) {verdict}")
    for decision in step.decisions:
        parts.append(f"{decision.decision} by {decision.by}")
    return f"step {step.number}: " + ("; ".join(parts) or "(empty answer)")


@runs_app.command("steps")
def list_steps(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    db: DbOption = None,
) -> None:
    """List a run's steps, with the ids of their tool calls (for fork --tool-result)."""
    for step in call(db, lambda rt: rt.steps(run_id)):
        stdout().print(_step_line(step), markup=False)


@runs_app.command("replay")
def replay_run(
    run_id: Annotated[str, typer.Argument(help="The run to replay.")],
    app: AppOption = None,
    db: DbOption = None,
) -> None:
    """Replay a run from its journal with the agent's current code, calling no model or tool.

    Exits 0 if the replay produced the same journal, 1 if it differs (each difference is
    printed)."""

    async def work(runtime: Runtime) -> Replay:
        return await runtime.replay(run_id, await agent_of_run(runtime, run_id, app))

    replayed = call(db, work)
    out = stdout()
    if replayed.identical:
        out.print(
            f"identical: the replay produced the same {len(replayed.events)} events "
            f"(status {replayed.state.status})",
            markup=False,
        )
        return
    out.print(f"the replay differs from run {run_id}:", markup=False)
    for difference in replayed.differences:
        out.print(f"  {difference}", markup=False)
    raise typer.Exit(EXIT_FAILED)


@runs_app.command("fork")
def fork_run(
    run_id: Annotated[str, typer.Argument(help="The run to fork.")],
    *,
    step: Annotated[int, typer.Option("--step", min=0, help="Copy steps 1..N, then continue.")],
    input: Annotated[
        str | None, typer.Option("--input", help="Replace the original input.")
    ] = None,
    tool_result: Annotated[
        list[str] | None,
        typer.Option(
            "--tool-result", help="CALL_ID=TEXT: what that call returned instead (repeatable)."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Continue on this model.")
    ] = None,
    app: AppOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a new run from a copy of a run's first N steps, optionally with another input or
    edited tool results, and continue it."""
    edits: dict[str, str] = {}
    for item in tool_result or []:
        call_id, sep, text = item.partition("=")
        if not sep or not call_id:
            fail(f"--tool-result takes CALL_ID=TEXT, got '{item}'")
        edits[call_id] = text

    async def work(runtime: Runtime) -> RunResult[Any]:
        chosen = await agent_of_run(runtime, run_id, app)
        return await runtime.fork(
            run_id, chosen, at_step=step, input=input, tool_results=edits or None, model=model
        )

    report(call(db, work), as_json=as_json)


@runs_app.command("diff")
def diff_runs(
    run_a: Annotated[str, typer.Argument(help="One run.")],
    run_b: Annotated[str, typer.Argument(help="The other run.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare two runs step by step: input, each answer, calls and results, the outcome."""
    found: RunDiff = call(db, lambda rt: rt.diff(run_a, run_b))
    out = stdout()
    if as_json:
        data = {
            "first_divergent_step": found.first_divergent_step,
            "differences": [asdict(d) for d in found.differences],
        }
        out.print(dumps(data), markup=False)
        return
    if not found.differences:
        out.print("no differences", markup=False)
        return
    for difference in found.differences:
        where = "end" if difference.step is None else f"step {difference.step}"
        out.print(f"{where}  {difference.what}:", markup=False)
        out.print(f"  - {difference.a}", markup=False)
        out.print(f"  + {difference.b}", markup=False)


@runs_app.command("delete")
def delete_runs(
    run_ids: Annotated[list[str], typer.Argument(help="The runs to delete.")],
    db: DbOption = None,
) -> None:
    """Delete runs and everything derived from them (journal, thread messages, leases)."""
    deleted = call(db, lambda rt: rt.delete_runs(run_ids))
    stdout().print(f"deleted {deleted} run{'' if deleted == 1 else 's'}", markup=False)


@runs_app.command("prune")
def prune_runs(
    older_than: Annotated[
        str, typer.Option("--older-than", help="An age such as 90d, 12h, 30m (s, m, h, d, w).")
    ],
    db: DbOption = None,
) -> None:
    """Delete runs older than an age (running ones are kept)."""
    match = _AGE.match(older_than.strip())
    if match is None:
        fail(
            f"--older-than takes a number and a unit (s, m, h, d, w), like 90d; got '{older_than}'"
        )
    seconds = float(match["n"]) * _SECONDS[match["unit"]]
    deleted = call(db, lambda rt: rt.delete_runs_older_than(seconds))
    stdout().print(f"deleted {deleted} run{'' if deleted == 1 else 's'}", markup=False)

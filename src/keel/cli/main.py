"""The ``keel`` command: run agents and look at their runs.

Exit codes: 0 the run completed (or the command succeeded), 1 the run failed, 2 bad usage or
configuration, 3 the run paused (a limit was reached; raise it and resume).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic_core import to_json
from rich.console import Console
from rich.table import Table

from keel.cli.loader import load_agent
from keel.cli.timeline import format_cost, format_time, render_summary, render_timeline
from keel.core.events import RunStatus
from keel.core.limits import Limits
from keel.errors import KeelError, RunNotFoundError, UsageError
from keel.runtime.result import RunResult
from keel.runtime.runtime import Runtime
from keel.settings import KeelSettings

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(
    name="keel",
    help="Keel: a production runtime for AI agents. Run agents and inspect their journals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

EXIT_FAILED, EXIT_USAGE, EXIT_PAUSED = 1, 2, 3
_STATUSES: tuple[RunStatus, ...] = ("running", "completed", "failed", "paused", "cancelled")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Where runs are kept: a path, sqlite:///path or memory "
        "[default: $KEEL_DB or keel.db].",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _stdout() -> Console:
    # Off a terminal rich assumes 80 columns and squeezes tables; pipes and logs can be wide.
    width = None if sys.stdout.isatty() else 200
    return Console(highlight=False, soft_wrap=True, width=width)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"error: {message}", markup=False, style="red"
    )
    raise typer.Exit(code)


def _runtime(db: str | None) -> Runtime:
    settings = KeelSettings.from_environ()
    if db is not None:
        settings = settings.model_copy(update={"db": db})
    return Runtime(settings=settings)


def _call(db: str | None, work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``work`` with a runtime; Keel errors become one clear line on stderr."""

    async def main() -> T:
        async with _runtime(db) as runtime:
            return await work(runtime)

    try:
        return asyncio.run(_coroutine(main()))
    except (UsageError, RunNotFoundError) as exc:
        _fail(exc.message)
    except KeelError as exc:
        _fail(exc.message, EXIT_FAILED)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


async def _coroutine(awaitable: Coroutine[Any, Any, T]) -> T:
    return await awaitable


def _result_json(result: RunResult[Any]) -> str:
    data = asdict(result)
    data["messages"] = [asdict(m) for m in result.messages]
    return to_json(data, indent=2, fallback=str).decode()


@app.command()
def run(
    target: Annotated[
        str, typer.Argument(help="The agent: path/to/file.py:agent or module:agent.")
    ],
    input: Annotated[str, typer.Argument(help="The user's message.")],
    *,
    thread: Annotated[
        str | None,
        typer.Option("--thread", "-t", help="Continue this conversation (e.g. customer-42)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Use this model, e.g. openai:gpt-4o-mini or rules."),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Override the agent's step limit.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run an agent once and print its answer."""
    try:
        agent = load_agent(target)
    except KeelError as exc:
        _fail(exc.message)
    limits = None
    if max_steps is not None:
        limits = Limits(**{**_limit_fields(agent.limits), "max_steps": max_steps})

    async def work(runtime: Runtime) -> RunResult[Any]:
        return await runtime.run(agent, input, thread=thread, model=model, limits=limits)

    result = _call(db, work)
    out = _stdout()
    if as_json:
        out.print(_result_json(result), markup=False)
    elif result.ok:
        shown = result.output if isinstance(result.output, str) else to_json(result.output).decode()
        out.print(shown, markup=False)
    summary = (
        f"run {result.run_id} {result.status} · {_plural(result.steps, 'step')} · "
        f"{_plural(result.tool_calls, 'tool call')} · {_plural(result.usage.total_tokens, 'token')}"
        f" · cost {format_cost(result.cost_usd)}"
    )
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(summary, markup=False, style="dim")
    if result.reason is not None:
        err.print(f"{result.reason.message} [{result.reason.code}]", markup=False)
    if result.status == "paused":
        raise typer.Exit(EXIT_PAUSED)
    if result.status != "completed":
        raise typer.Exit(EXIT_FAILED)


def _limit_fields(limits: Limits) -> dict[str, Any]:
    return {name: getattr(limits, name) for name in Limits.__dataclass_fields__}


@runs_app.command("list")
def list_runs(
    thread: Annotated[str | None, typer.Option("--thread", "-t", help="Only this thread.")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", "-s", help=f"Only this status: {', '.join(_STATUSES)}."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    if status is not None and status not in _STATUSES:
        _fail(f"unknown status '{status}'; use one of {', '.join(_STATUSES)}")
    records = _call(db, lambda rt: rt.store.list_runs(thread_id=thread, status=status, limit=limit))
    out = _stdout()
    if as_json:
        out.print(json.dumps([asdict(r) for r in records], indent=2), markup=False)
        return
    if not records:
        out.print('no runs yet; start one with: keel run path/to/agent.py:agent "Hello"')
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
    for r in records:
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


@runs_app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="The run's id (from keel runs list).")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a run's timeline: model calls, tool calls with arguments and results, latency,
    tokens and cost."""

    async def work(runtime: Runtime) -> tuple[Any, list[Any]]:
        return await runtime.store.get_run(run_id), await runtime.store.load(run_id)

    record, events = _call(db, work)
    out = _stdout()
    if as_json:
        data = {"run": asdict(record), "events": [json.loads(to_json(e)) for e in events]}
        out.print(json.dumps(data, indent=2), markup=False)
        return
    for line in [*render_summary(record), "", *render_timeline(events)]:
        out.print(line, markup=False)


def main() -> None:
    """Entry point of the ``keel`` script."""
    app(prog_name="keel")


if __name__ == "__main__":  # pragma: no cover
    main()

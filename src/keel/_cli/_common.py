"""What every ``keel`` command shares: consoles, one-line errors, exit codes, the runtime,
finding a run's agent, and printing a run's outcome."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic_core import to_json
from rich.console import Console

from keel._agent import Agent
from keel._cli.loader import load_agent
from keel._cli.timeline import format_cost
from keel._core.events import RunStarted
from keel._runtime.result import RunResult
from keel._runtime.runtime import Runtime
from keel._settings import KeelSettings
from keel.errors import KeelError, RunNotFoundError, ThreadBusyError, UsageError

T = TypeVar("T")

EXIT_FAILED, EXIT_USAGE, EXIT_PAUSED = 1, 2, 3

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Where runs are kept: a path, sqlite:///path, postgresql://... or memory "
        "[default: $KEEL_DB or keel.db].",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
AgentOption = Annotated[
    str | None,
    typer.Option(
        "--agent",
        "-a",
        help="The agent (path/to/file.py:agent or module:agent); default: the one the run was "
        "started from with keel run.",
    ),
]


def stdout() -> Console:
    """The console for results. Off a terminal rich assumes 80 columns and squeezes tables;
    pipes and logs can be wide."""
    width = None if sys.stdout.isatty() else 200
    return Console(highlight=False, soft_wrap=True, width=width)


def stderr() -> Console:
    """The console for summaries and errors."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def plural(count: int, noun: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one line on stderr and exit."""
    stderr().print(f"error: {message}", markup=False, style="red")
    raise typer.Exit(code)


def target_ref(target: str) -> str:
    """A target with its file made absolute, so another process in another directory can
    load it from the journal."""
    where, _, attribute = target.rpartition(":")
    if where.endswith(".py") or "/" in where or "\\" in where:
        return f"{Path(where).resolve()}:{attribute}"
    return target


def make_runtime(db: str | None, *, agents: tuple[tuple[Agent[Any], str], ...] = ()) -> Runtime:
    """A runtime on ``db`` (default: settings) that knows ``agents`` with their refs."""
    settings = KeelSettings.from_environ()
    if db is not None:
        settings = settings.model_copy(update={"db": db})
    runtime = Runtime(settings=settings, recover_on_start=False)
    for agent, ref in agents:
        runtime.register(agent, ref=ref)
    return runtime


def call(
    db: str | None,
    work: Callable[[Runtime], Awaitable[T]],
    *,
    agents: tuple[tuple[Agent[Any], str], ...] = (),
) -> T:
    """Run ``work`` with a runtime; Keel errors become one clear line on stderr."""

    async def main() -> T:
        async with make_runtime(db, agents=agents) as runtime:
            return await work(runtime)

    try:
        return asyncio.run(_coroutine(main()))
    except (UsageError, RunNotFoundError, ThreadBusyError) as exc:
        fail(exc.message)
    except KeelError as exc:
        fail(exc.message, EXIT_FAILED)
    except KeyboardInterrupt:
        fail("interrupted", 130)


async def _coroutine(awaitable: Coroutine[Any, Any, T]) -> T:
    return await awaitable


def load(target: str) -> Agent[Any]:
    """The agent a target names, or a one-line error."""
    try:
        return load_agent(target)
    except KeelError as exc:
        fail(exc.message)


async def agent_of_run(runtime: Runtime, run_id: str, target: str | None) -> Agent[Any]:
    """The agent to continue a run with: ``--agent``, else the one its journal names."""
    ref = target
    if ref is None:
        first = (await runtime.store.load(run_id))[0]
        ref = first.agent_ref if isinstance(first, RunStarted) else None
    if ref is None:
        raise UsageError(
            f"run {run_id} does not say where its agent is defined (it was not started with "
            "keel run); pass --agent path/to/file.py:agent"
        )
    agent = load_agent(ref)
    runtime.register(agent, ref=target_ref(ref))
    return agent


def result_json(result: RunResult[Any]) -> str:
    """A run's result as indented JSON."""
    data = asdict(result)
    data["messages"] = [asdict(m) for m in result.messages]
    return to_json(data, indent=2, fallback=str).decode()


def report(result: RunResult[Any], *, as_json: bool) -> None:
    """Print a run's answer (or JSON) on stdout, its summary on stderr, and exit with the
    status's code."""
    out = stdout()
    if as_json:
        out.print(result_json(result), markup=False)
    elif result.ok:
        shown = result.output if isinstance(result.output, str) else to_json(result.output).decode()
        out.print(shown, markup=False)
    summary = (
        f"run {result.run_id} {result.status} · {plural(result.steps, 'step')} · "
        f"{plural(result.tool_calls, 'tool call')} · {plural(result.usage.total_tokens, 'token')}"
        f" · cost {format_cost(result.cost_usd)}"
    )
    err = stderr()
    err.print(summary, markup=False, style="dim")
    if result.reason is not None:
        err.print(f"{result.reason.message} [{result.reason.code}]", markup=False)
    for pending in result.pending:
        err.print(
            f"waiting for a decision on call {pending.call.id}: {pending.call.name}"
            f"({pending.call.arguments}) [{pending.kind}]; keel approve {result.run_id} "
            f"--call {pending.call.id}, or keel reject ... --reason ...",
            markup=False,
        )
    if result.status in ("paused", "awaiting_approval"):
        raise typer.Exit(EXIT_PAUSED)
    if result.status != "completed":
        raise typer.Exit(EXIT_FAILED)


def dumps(data: Any) -> str:
    """Indented JSON for ``--json`` output."""
    return json.dumps(data, indent=2, default=str)

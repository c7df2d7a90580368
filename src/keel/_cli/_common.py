"""What every ``keel`` command shares: consoles, one-line errors, exit codes, the runtime,
finding a run's agent, and printing a run's outcome.

No traceback reaches a user: Keel's errors, configuration mistakes (a malformed URL), services
that cannot be reached and Ctrl-C all end in one line on stderr with what to do next.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic_core import to_json
from rich.console import Console

from keel._agent import Agent
from keel._cli.loader import load_agent, load_app
from keel._cli.timeline import format_cost
from keel._redact import redact
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
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        "--agent",
        "-a",
        help="Where the run's agent is defined: a Python file or module (every agent it "
        "defines), or file.py:attribute / module:attribute [default: $KEEL_APP].",
    ),
]
AgentOption = AppOption


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


def make_runtime(
    db: str | None,
    *,
    agents: tuple[tuple[Agent[Any], str], ...] = (),
    new_id: Callable[[float], str] | None = None,
    lease_ttl_s: float | None = None,
) -> Runtime:
    """A runtime on ``db`` (default: settings) that knows ``agents`` with their refs."""
    settings = KeelSettings.from_environ()
    if db is not None:
        settings = settings.model_copy(update={"db": db})
    options: dict[str, Any] = {} if new_id is None else {"new_id": new_id}
    if lease_ttl_s is not None:
        options["lease_ttl_s"] = lease_ttl_s
    runtime = Runtime(settings=settings, recover_on_start=False, **options)
    for agent, ref in agents:
        runtime.register(agent, ref=ref)
    return runtime


def call(
    db: str | None,
    work: Callable[[Runtime], Awaitable[T]],
    *,
    agents: tuple[tuple[Agent[Any], str], ...] = (),
    new_id: Callable[[float], str] | None = None,
    on_interrupt: Callable[[], str] | None = None,
) -> T:
    """Run ``work`` with a runtime; errors become one clear line on stderr, never a
    traceback. ``on_interrupt`` says what Ctrl-C left behind and how to go on."""

    async def main() -> T:
        async with make_runtime(db, agents=agents, new_id=new_id) as runtime:
            return await work(runtime)

    return guarded(lambda: asyncio.run(_coroutine(main())), on_interrupt=on_interrupt)


def guarded(work: Callable[[], T], *, on_interrupt: Callable[[], str] | None = None) -> T:
    """``work()``, with every error turned into one line on stderr and an exit code."""
    try:
        return work()
    except (UsageError, RunNotFoundError, ThreadBusyError) as exc:
        fail(exc.message)
    except KeelError as exc:
        fail(exc.message, EXIT_FAILED)
    except KeyboardInterrupt:
        fail(on_interrupt() if on_interrupt is not None else "interrupted", 130)
    except typer.Exit:
        raise
    except Exception as exc:
        if os.environ.get("KEEL_DEBUG"):
            raise
        fail(_describe(exc), EXIT_FAILED)


def _describe(exc: BaseException) -> str:
    """A one-line account of an unexpected error, with any password masked."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    module = type(exc).__module__.split(".")[0]
    if module == "redis":
        hint = "check KEEL_REDIS_URL (e.g. redis://127.0.0.1:6379/0) and that Redis is running"
    elif isinstance(exc, OSError):
        hint = "check that the file or service it names is reachable"
    else:
        hint = "run again with KEEL_DEBUG=1 to see where it came from"
    return redact(f"{type(exc).__name__}: {text}; {hint}")


async def _coroutine(awaitable: Coroutine[Any, Any, T]) -> T:
    return await awaitable


def load(target: str) -> Agent[Any]:
    """The agent a target names, or a one-line error."""
    try:
        return load_agent(target)
    except KeelError as exc:
        fail(exc.message)


def app_of(app: str | None) -> str | None:
    """The app the operator named: ``--app``, else ``KEEL_APP``."""
    return app if app else KeelSettings.from_environ().app


async def agent_of_run(runtime: Runtime, run_id: str, app: str | None) -> Agent[Any]:
    """The agent to continue a run with, from the app the operator names (``--app`` or
    ``KEEL_APP``), chosen by the name the run's journal records. The journal never decides
    what code is loaded."""
    record = await runtime.store.get_run(run_id)
    chosen = app_of(app)
    if chosen is None:
        raise UsageError(
            f"say where agent '{record.agent}' of run {run_id} is defined: --app "
            "path/to/file.py (or a module), or set KEEL_APP"
        )
    agents = load_app(chosen)
    agent = agents.get(record.agent)
    if agent is None:
        raise UsageError(
            f"run {run_id} belongs to agent '{record.agent}', which {chosen} does not define "
            f"(it defines: {', '.join(sorted(agents))})"
        )
    runtime.register(agent)
    return agent


def result_json(result: RunResult[Any]) -> str:
    """A run's result as indented JSON."""
    data = asdict(result)
    data["output"] = data.pop("final_output")
    data["messages"] = [asdict(m) for m in result.messages]
    return to_json(data, indent=2, fallback=str).decode()


def report(result: RunResult[Any], *, as_json: bool, app: str | None = None) -> None:
    """Print a run's answer (or JSON) on stdout, its summary on stderr, and exit with the
    status's code. ``app`` (where the run's agent is defined) goes into the hints."""
    with_app = f" --app {app}" if app else " --app APP"
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
        why = f" ({pending.reason})" if pending.reason else ""
        err.print(
            f"waiting for a decision on call {pending.call.id}: {pending.call.name}"
            f"({pending.call.arguments}) [{pending.kind}]{why}; keel approve {result.run_id} "
            f"--call {pending.call.id} --by NAME{with_app}, or keel reject ... --reason ...",
            markup=False,
        )
    if result.status == "paused":
        err.print(
            f"continue it with: keel resume {result.run_id}{with_app} (raise a limit with "
            "--max-steps N and the like)",
            markup=False,
        )
    if result.status in ("queued", "running"):
        err.print(
            f"run {result.run_id} is {result.status}: a worker continues it (keel worker APP), "
            f"or continue it here with: keel resume {result.run_id}{with_app}",
            markup=False,
        )
    if result.status in ("paused", "awaiting_approval", "queued", "running"):
        raise typer.Exit(EXIT_PAUSED)
    if result.status != "completed":
        raise typer.Exit(EXIT_FAILED)


def dumps(data: Any) -> str:
    """Indented JSON for ``--json`` output."""
    return json.dumps(data, indent=2, default=str)

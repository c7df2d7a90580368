"""The ``keel`` command: run agents, continue and decide on their runs, look at journals,
and drive runs from the queue (``keel worker``).

Exit codes: 0 the run completed (or the command succeeded), 1 the run failed (or a replay
differs), 2 bad usage or configuration, 3 the run paused, waits for a person or is queued,
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
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
    guarded,
    load,
    make_runtime,
    report,
    stderr,
    stdout,
    target_ref,
)
from keel._cli.admin import breakers_app, db_app, threads_app
from keel._cli.approvals import approvals_app, register_decisions
from keel._cli.audit import audit_app
from keel._cli.budgets import budgets_app
from keel._cli.evals import eval_app
from keel._cli.feedback import feedback_app
from keel._cli.health import health
from keel._cli.intake import intake
from keel._cli.keys import keys_app
from keel._cli.loader import load_app
from keel._cli.mcp import mcp
from keel._cli.runs import runs_app
from keel._cli.schedules import schedules_app
from keel._cli.serve import serve
from keel._cli.timeline import format_time
from keel._cli.webhooks import webhooks_app
from keel._core.limits import Limits
from keel._ids import new_run_id
from keel._runtime.result import RunResult
from keel._runtime.runtime import Runtime
from keel._runtime.stopping import Recovery

__all__ = ["app", "main"]

app = typer.Typer(
    name="keel",
    help="Keel: a production runtime for AI agents. Run agents, continue and approve their "
    "runs, and inspect their journals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(runs_app, name="runs")
app.add_typer(approvals_app, name="approvals")
app.add_typer(threads_app, name="threads")
app.add_typer(db_app, name="db")
app.add_typer(breakers_app, name="breakers")
app.add_typer(audit_app, name="audit")
app.add_typer(budgets_app, name="budgets")
app.add_typer(keys_app, name="keys")
app.add_typer(feedback_app, name="feedback")
app.add_typer(schedules_app, name="schedules")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(eval_app, name="eval")
register_decisions(app)
app.command("health")(health)
app.command("serve")(serve)
app.command("mcp")(mcp)
app.command("intake")(intake)

MaxSteps = Annotated[int | None, typer.Option("--max-steps", min=1, help="Raise the step limit.")]
MaxToolCalls = Annotated[
    int | None, typer.Option("--max-tool-calls", min=1, help="Raise the tool-call limit.")
]
MaxTokens = Annotated[
    int | None, typer.Option("--max-tokens", min=1, help="Raise the token limit.")
]
MaxWallTime = Annotated[
    float | None, typer.Option("--max-wall-time", min=0.001, help="Seconds of wall time allowed.")
]
MaxCost = Annotated[
    float | None,
    typer.Option("--max-cost", min=0, help="Raise the run's cost cap (US dollars)."),
]
MaxRepeats = Annotated[
    int | None,
    typer.Option("--max-repeated-calls", min=1, help="Raise the limit on identical tool calls."),
]


def _limits(base: Limits, **overrides: Any) -> Limits | None:
    chosen = {name: value for name, value in overrides.items() if value is not None}
    return dataclasses.replace(base, **chosen) if chosen else None


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
    if_busy: Annotated[
        str,
        typer.Option(
            "--if-busy", help="When the thread has a running run: queue, reject or interrupt."
        ),
    ] = "queue",
    max_steps: MaxSteps = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="The tenant the run is for (checks, budgets).")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="The user the run is for (checks, budgets).")
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="A role of the user (repeat for several), read by checks."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run an agent once and print its answer."""
    agent = load(target)
    if if_busy not in ("queue", "reject", "interrupt"):
        fail(f"--if-busy must be queue, reject or interrupt, got '{if_busy}'")
    limits = _limits(agent.limits, max_steps=max_steps)
    made: list[str] = []

    def new_id(now: float) -> str:
        made.append(new_run_id(now))
        return made[-1]

    def interrupted() -> str:
        if not made:
            return "interrupted before the run started; nothing was journaled"
        app = target.rpartition(":")[0]
        return (
            f"interrupted: run {made[-1]} was stopped where it stood (its journal keeps every "
            f"step); continue it with: keel resume {made[-1]} --app {app}"
        )

    async def work(runtime: Runtime) -> RunResult[Any]:
        return await runtime.run(
            agent,
            input,
            thread=thread,
            model=model,
            limits=limits,
            if_busy=if_busy,  # type: ignore[arg-type]
            tenant=tenant,
            user=user,
            roles=role or (),
        )

    result = call(
        db,
        work,
        agents=((agent, target_ref(target)),),
        new_id=new_id,
        on_interrupt=interrupted,
    )
    report(result, as_json=as_json, app=target.rpartition(":")[0])


@app.command()
def resume(
    run_id: Annotated[
        str | None, typer.Argument(help="The run to continue; leave out with --all.")
    ] = None,
    *,
    all_runs: Annotated[
        bool,
        typer.Option("--all", help="Continue every run whose process died (status running)."),
    ] = False,
    app: AppOption = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Continue on this model instead of the recorded one."),
    ] = None,
    max_steps: MaxSteps = None,
    max_tool_calls: MaxToolCalls = None,
    max_tokens: MaxTokens = None,
    max_wall_time: MaxWallTime = None,
    max_repeated_calls: MaxRepeats = None,
    max_cost: MaxCost = None,
    queue: Annotated[
        bool,
        typer.Option(
            "--queue", help="Put the run back in the queue for a worker instead of driving it."
        ),
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Continue a paused, queued or interrupted run from its journal, optionally with higher
    limits. The agent comes from --app (or KEEL_APP), never from the journal; with --queue a
    worker continues it and no agent is needed here.

    Completed model and tool calls are not repeated; the run goes on with the models recorded
    at its start unless --model says otherwise."""
    if all_runs == (run_id is not None):
        fail("give a run id, or --all to continue every interrupted run")
    if all_runs:
        _resume_all(db, app, as_json=as_json)
        return
    assert run_id is not None
    overrides = {
        "max_steps": max_steps,
        "max_tool_calls": max_tool_calls,
        "max_total_tokens": max_tokens,
        "max_wall_time_s": max_wall_time,
        "max_repeated_calls": max_repeated_calls,
        "max_cost_usd": max_cost,
    }
    if queue:
        _requeue(db, run_id, model, overrides, as_json=as_json)
        return

    async def work(runtime: Runtime) -> RunResult[Any]:
        chosen = await agent_of_run(runtime, run_id, app)
        state = await runtime.load_state(run_id)
        limits = _limits(
            state.limits,
            max_steps=max_steps,
            max_tool_calls=max_tool_calls,
            max_total_tokens=max_tokens,
            max_wall_time_s=max_wall_time,
            max_repeated_calls=max_repeated_calls,
            max_cost_usd=max_cost,
        )
        return await runtime.resume(run_id, chosen, limits=limits, model=model)

    report(
        call(
            db,
            work,
            on_interrupt=lambda: f"interrupted: continue run {run_id} with keel resume {run_id}",
        ),
        as_json=as_json,
    )


def _requeue(
    db: str | None, run_id: str, model: str | None, overrides: dict[str, Any], *, as_json: bool
) -> None:
    async def work(runtime: Runtime) -> RunResult[Any]:
        state = await runtime.load_state(run_id)
        limits = _limits(state.limits, **overrides)
        return await runtime.requeue(
            run_id, limits=limits, model=model, reason="resumed from the keel command"
        )

    result = call(db, work)
    if as_json:
        report(result, as_json=True)
    if result.status == "queued":
        stderr().print(
            f"run {run_id} is queued: a worker continues it (keel worker APP)", markup=False
        )
        return
    report(result, as_json=False)


def _resume_all(db: str | None, app: str | None, *, as_json: bool) -> None:
    chosen = app_of(app)
    if chosen is None:
        fail("say which agents to continue runs of: --app path/to/file.py, or set KEEL_APP")
    agents = guarded(lambda: load_app(chosen))

    async def work(runtime: Runtime) -> Recovery:
        for agent in agents.values():
            runtime.register(agent)
        return await runtime.recover(limit=1000)

    recovery = call(db, work)
    out = stdout()
    if as_json:
        data = {
            "resumed": [{"run_id": r.run_id, "status": r.status} for r in recovery.results],
            "skipped": [
                {"run_id": s.run_id, "reason": s.reason, "until": s.until} for s in recovery.skipped
            ],
        }
        out.print(dumps(data), markup=False)
        return
    for result in recovery.results:
        out.print(f"{result.run_id}  {result.status}", markup=False)
    for skipped in recovery.skipped:
        until = "" if skipped.until is None else f" (until {format_time(skipped.until)})"
        out.print(f"{skipped.run_id}  skipped: {skipped.reason}{until}", markup=False)
    if not recovery.results and not recovery.skipped:
        out.print("no interrupted runs")


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run to end.")],
    *,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the journal.")] = (
        "cancelled from the keel command"
    ),
    db: DbOption = None,
) -> None:
    """End a run for good (status cancelled), whatever it is doing."""
    result = call(db, lambda rt: rt.cancel(run_id, reason=reason))
    stdout().print(f"run {result.run_id} {result.status}", markup=False)


@app.command()
def worker(
    app_target: Annotated[
        str | None,
        typer.Argument(
            metavar="APP",
            help="The agents to drive runs of: a Python file or module (every agent it "
            "defines), or file.py:attribute [default: $KEEL_APP].",
        ),
    ] = None,
    *,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Runs driven at once.")
    ] = 8,
    poll_interval: Annotated[
        float,
        typer.Option("--poll-interval", min=0.01, help="Seconds between looks for expired leases."),
    ] = 1.0,
    grace: Annotated[
        float,
        typer.Option("--grace", min=0, help="Seconds runs under way may finish after Ctrl-C."),
    ] = 10.0,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit once nothing is left to claim.")
    ] = False,
    lease_ttl: Annotated[
        float,
        typer.Option(
            "--lease-ttl",
            min=0.5,
            help="Seconds a run's lease lasts unrenewed: how soon another worker takes over "
            "the runs of one that died.",
        ),
    ] = 30.0,
    db: DbOption = None,
) -> None:
    """Drive runs from the queue (submitted runs, runs a person decided on, runs whose process
    died) until stopped with Ctrl-C or SIGTERM. Any number of workers share a database."""
    chosen = app_of(app_target)
    if chosen is None:
        fail("say which agents this worker drives: keel worker path/to/file.py (or KEEL_APP)")
    agents = guarded(lambda: load_app(chosen))

    async def main() -> int:
        async with make_runtime(db, lease_ttl_s=lease_ttl) as runtime:
            for agent in agents.values():
                runtime.register(agent)
            drive = runtime.worker(
                concurrency=concurrency, poll_interval_s=poll_interval, grace_s=grace
            )
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, drive.stop)
            stderr().print(
                f"worker {runtime.owner}: driving runs of {', '.join(sorted(agents))} "
                f"({concurrency} at a time); Ctrl-C to stop",
                markup=False,
                style="dim",
            )
            await drive.run(until_idle=until_idle)
            return drive.completed

    completed = guarded(lambda: asyncio.run(main()))
    stderr().print(f"worker stopped after driving {completed} run(s)", markup=False, style="dim")


def main() -> None:
    """Entry point of the ``keel`` script: whatever goes wrong ends in one line."""
    try:
        guarded(lambda: app(prog_name="keel"))
    except typer.Exit as done:  # raised by fail() outside a command
        sys.exit(done.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()

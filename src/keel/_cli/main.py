"""The ``keel`` command: run agents, continue and decide on their runs, look at journals.

Exit codes: 0 the run completed (or the command succeeded), 1 the run failed (or a replay
differs), 2 bad usage or configuration, 3 the run paused or waits for a person.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer

from keel._cli._common import (
    AgentOption,
    DbOption,
    JsonOption,
    agent_of_run,
    call,
    dumps,
    fail,
    load,
    report,
    stdout,
    target_ref,
)
from keel._cli.admin import breakers_app, db_app, threads_app
from keel._cli.approvals import approvals_app, register_decisions
from keel._cli.runs import runs_app
from keel._core.limits import Limits
from keel._runtime.result import RunResult
from keel._runtime.runtime import Recovery, Runtime

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
register_decisions(app)

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
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run an agent once and print its answer."""
    agent = load(target)
    if if_busy not in ("queue", "reject", "interrupt"):
        fail(f"--if-busy must be queue, reject or interrupt, got '{if_busy}'")
    limits = _limits(agent.limits, max_steps=max_steps)

    async def work(runtime: Runtime) -> RunResult[Any]:
        return await runtime.run(
            agent,
            input,
            thread=thread,
            model=model,
            limits=limits,
            if_busy=if_busy,  # type: ignore[arg-type]
        )

    report(call(db, work, agents=((agent, target_ref(target)),)), as_json=as_json)


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
    agent: AgentOption = None,
    max_steps: MaxSteps = None,
    max_tool_calls: MaxToolCalls = None,
    max_tokens: MaxTokens = None,
    max_wall_time: MaxWallTime = None,
    max_repeated_calls: MaxRepeats = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Continue a paused or interrupted run from its journal, optionally with higher limits.

    Completed model and tool calls are not repeated."""
    if all_runs == (run_id is not None):
        fail("give a run id, or --all to continue every interrupted run")
    if all_runs:
        _resume_all(db, agent, as_json=as_json)
        return
    assert run_id is not None

    async def work(runtime: Runtime) -> RunResult[Any]:
        chosen = await agent_of_run(runtime, run_id, agent)
        state = await runtime.load_state(run_id)
        limits = _limits(
            state.limits,
            max_steps=max_steps,
            max_tool_calls=max_tool_calls,
            max_total_tokens=max_tokens,
            max_wall_time_s=max_wall_time,
            max_repeated_calls=max_repeated_calls,
        )
        return await runtime.resume(run_id, chosen, limits=limits)

    report(call(db, work), as_json=as_json)


def _resume_all(db: str | None, target: str | None, *, as_json: bool) -> None:
    async def work(runtime: Runtime) -> Recovery:
        for record in await runtime.store.recoverable_runs(limit=1000):
            try:
                await agent_of_run(runtime, record.run_id, target)
            except Exception:  # noqa: BLE001, S112 - reported as skipped by recover()
                continue
        return await runtime.recover(limit=1000)

    recovery = call(db, work)
    out = stdout()
    if as_json:
        data = {
            "resumed": [{"run_id": r.run_id, "status": r.status} for r in recovery.results],
            "skipped": [{"run_id": i, "reason": why} for i, why in recovery.skipped],
        }
        out.print(dumps(data), markup=False)
        return
    for result in recovery.results:
        out.print(f"{result.run_id}  {result.status}", markup=False)
    for run_id, why in recovery.skipped:
        out.print(f"{run_id}  skipped: {why}", markup=False)
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


def main() -> None:
    """Entry point of the ``keel`` script."""
    app(prog_name="keel")


if __name__ == "__main__":  # pragma: no cover
    main()

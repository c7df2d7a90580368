"""``keel feedback``: record feedback on runs, list it, and export it as evaluation cases."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from keel._cli._common import DbOption, JsonOption, call, dumps, plural, stderr, stdout
from keel._cli.runs import parse_moment
from keel._cli.timeline import format_time
from keel._runtime.runtime import Runtime
from keel.ports import Feedback

__all__ = ["feedback_app"]

feedback_app = typer.Typer(
    help="Record feedback on runs (scores, labels, comments), list it, export eval cases.",
    no_args_is_help=True,
)

LabelOption = Annotated[str | None, typer.Option("--label", "-l", help="Only this label.")]
MinScore = Annotated[float | None, typer.Option("--min-score", help="Score at least.")]
MaxScore = Annotated[float | None, typer.Option("--max-score", help="Score at most.")]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Given since: an age (1h, 2d) or an ISO time.")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Given before: an age (1h, 2d) or an ISO time.")
]
AgentOption = Annotated[str | None, typer.Option("--agent", help="Only runs of this agent.")]


@feedback_app.command("add")
def add_feedback(
    run_id: Annotated[str, typer.Argument(help="The run the feedback is about.")],
    *,
    step: Annotated[
        int | None, typer.Option("--step", min=1, help="About this step of the run.")
    ] = None,
    score: Annotated[
        float | None,
        typer.Option("--score", help="-1 or 1 (thumbs down or up), or 1 to 5 (a rating)."),
    ] = None,
    label: Annotated[str | None, typer.Option("--label", "-l", help="A free label.")] = None,
    comment: Annotated[str | None, typer.Option("--comment", "-c", help="Free text.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who gives it.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a score, a label and/or a comment on a run or one of its steps."""
    given: Feedback = call(
        db,
        lambda rt: rt.add_feedback(
            run_id, step=step, score=score, label=label, comment=comment, by=by
        ),
    )
    if as_json:
        stdout().print(dumps(asdict(given)), markup=False)
        return
    where = f"step {step} of run {run_id}" if step is not None else f"run {run_id}"
    stdout().print(f"recorded feedback {given.id} on {where}", markup=False)


@feedback_app.command("list")
def list_feedback(
    *,
    run_id: Annotated[str | None, typer.Option("--run", help="Only on this run.")] = None,
    label: LabelOption = None,
    min_score: MinScore = None,
    max_score: MaxScore = None,
    since: SinceOption = None,
    until: UntilOption = None,
    agent: AgentOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List feedback, newest first."""
    filters = _filters(label, min_score, max_score, since, until, agent)
    items: list[Feedback] = call(
        db, lambda rt: rt.list_feedback(run_id=run_id, limit=limit, **filters)
    )
    out = stdout()
    if as_json:
        out.print(dumps([asdict(item) for item in items]), markup=False)
        return
    if not items:
        out.print("no feedback matches", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("RUN", "STEP", "SCORE", "LABEL", "BY", "AT", "COMMENT"):
        table.add_column(column, no_wrap=column != "COMMENT", overflow="fold")
    for item in items:
        table.add_row(
            item.run_id,
            "" if item.step is None else str(item.step),
            "" if item.score is None else f"{item.score:g}",
            item.label or "",
            item.by or "",
            format_time(item.at),
            (item.comment or "")[:80],
        )
    out.print(table)


@feedback_app.command("export")
def export_feedback(
    *,
    label: LabelOption = None,
    min_score: MinScore = None,
    max_score: MaxScore = None,
    since: SinceOption = None,
    until: UntilOption = None,
    agent: AgentOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the JSON lines here [default: stdout]."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Export the runs with matching feedback as evaluation cases, one JSON object a line:
    input, thread history, the final output as reference, the tool calls as expected calls,
    labels as tags, and metadata (see docs/guide/history-and-feedback.md)."""
    filters = _filters(label, min_score, max_score, since, until, agent)

    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        return await runtime.export_eval_cases(output if output else sys.stdout, **filters)

    cases = call(db, work)
    if output is not None:
        stderr().print(f"wrote {plural(len(cases), 'case')} to {output}", markup=False)


def _filters(  # noqa: PLR0917 - the command's filter options, in order
    label: str | None,
    min_score: float | None,
    max_score: float | None,
    since: str | None,
    until: str | None,
    agent: str | None,
) -> dict[str, Any]:
    return {
        "label": label,
        "min_score": min_score,
        "max_score": max_score,
        "since": parse_moment(since, "--since"),
        "until": parse_moment(until, "--until"),
        "agent": agent,
    }

"""``keel eval``: run an agent over a dataset and score it (the CI gate), export runs as
cases, and replay recorded runs against the current code.

``keel eval DATASET --agent module:agent`` is ``keel eval run DATASET ...``.

Exit codes: 0 every gate is met (or none was set), 1 a gate failed (``--min-score``,
``--max-cost``, ``--max-regressions``; with ``--replay``, any case that changed), 2 bad usage
(a malformed dataset, an agent that cannot be loaded, a bad option).

The agent's module may define ``eval_deps(case)`` (fresh dependencies for each case run),
``eval_model(case)`` (the model of each case run) and ``eval_scorers`` (the scorers used
when no ``--scorer`` is given).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from keel._agent import Agent
from keel._cli._common import (
    EXIT_FAILED,
    DbOption,
    fail,
    guarded,
    make_runtime,
    plural,
    stderr,
    stdout,
)
from keel._cli.evals_output import (
    Gates,
    check_gates,
    parse_min_scores,
    print_comparison,
    print_report,
)
from keel._cli.loader import _module
from keel._cli.runs import _STATUSES, parse_moment
from keel._core.events import Event
from keel._runtime.runtime import Runtime
from keel.evals import (
    Case,
    Comparison,
    Contains,
    Dataset,
    Exact,
    JSONMatch,
    Judge,
    Report,
    Scorer,
    ToolCalls,
    evaluate,
    export_cases,
    replay_model,
    replay_scorers,
)

__all__ = ["eval_app"]


class _DefaultRun(TyperGroup):
    """``keel eval DATASET ...`` runs ``keel eval run DATASET ...``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_DefaultRun,
    help="Evaluate an agent on a dataset (keel eval DATASET --agent module:agent), export "
    "runs as cases, replay recorded runs.",
    no_args_is_help=True,
)

_BUILT_IN: dict[str, Callable[[], Scorer]] = {
    "exact": Exact,
    "contains": Contains,
    "json": JSONMatch,
    "tool_calls": lambda: ToolCalls("exact"),
    "tool_calls_in_order": lambda: ToolCalls("in_order"),
    "tool_calls_subset": lambda: ToolCalls("subset"),
}


def _load_agent(target: str) -> tuple[Agent[Any], ModuleType]:
    where, sep, attribute = target.rpartition(":")
    if not sep or not where or not attribute:
        fail(f"--agent {target!r} must look like 'path/to/file.py:agent' or 'module:agent'")
    module = guarded(lambda: _module(where))
    found = getattr(module, attribute, None)
    if not isinstance(found, Agent):
        fail(f"{target} is not a keel.Agent (it is {type(found).__name__})")
    return found, module


def _custom_scorer(spec: str) -> Scorer:
    where, _, attribute = spec.rpartition(":")
    module = guarded(lambda: _module(where))
    found = getattr(module, attribute, None)
    if found is None:
        fail(f"--scorer {spec}: {where} has no attribute {attribute!r}")
    if isinstance(found, type):
        found = found()  # a scorer class: its default configuration
    if not callable(found):
        fail(f"--scorer {spec} is not callable; a scorer is called with each sample")
    scorer: Scorer = found
    return scorer


def _scorers(
    names: list[str], module: ModuleType, judge_model: str | None, rubric: str | None
) -> list[Scorer]:
    if not names:
        given = getattr(module, "eval_scorers", None)
        if given is not None:
            return list(given)
        names = ["exact", "tool_calls"]
    chosen: list[Scorer] = []
    for name in names:
        if name in _BUILT_IN:
            chosen.append(_BUILT_IN[name]())
        elif name == "judge":
            if not judge_model or not rubric:
                fail("--scorer judge needs --judge-model MODEL and --rubric TEXT (or @file)")
            chosen.append(Judge(judge_model, rubric))
        elif ":" in name:
            chosen.append(_custom_scorer(name))
        else:
            known = ", ".join([*_BUILT_IN, "judge"])
            fail(f"unknown scorer {name!r}: use one of {known}, or module:callable")
    return chosen


def _rubric(text: str | None) -> str | None:
    if text is not None and text.startswith("@"):
        return guarded(lambda: Path(text[1:]).read_text(encoding="utf-8"))
    return text


async def _journals(runtime: Runtime, cases: Dataset) -> dict[str, list[Event]]:
    """The source runs' journals of the cases that do not carry their model answers."""
    found = {}
    for case in cases:
        run_id = case.metadata.get("run_id")
        if not case.metadata.get("responses") and isinstance(run_id, str):
            found[case.id] = await runtime.store.load(run_id)
    return found


@eval_app.command("run")
def run_eval(
    dataset: Annotated[Path, typer.Argument(help="The cases: a .jsonl or .yaml file.")],
    *,
    agent: Annotated[
        str, typer.Option("--agent", "-a", help="The agent: path/to/file.py:agent or module:agent.")
    ],
    scorer: Annotated[
        list[str] | None,
        typer.Option(
            "--scorer",
            "-s",
            help="A scorer (repeatable): exact, contains, json, tool_calls, "
            "tool_calls_in_order, tool_calls_subset, judge, or module:callable "
            "[default: the module's eval_scorers, else exact and tool_calls].",
        ),
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", "-n", min=1, help="Runs per case.")] = 1,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Runs at once.")
    ] = 4,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only cases with this tag (repeatable).")
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="The judge's model, e.g. openai:gpt-4o.")
    ] = None,
    rubric: Annotated[
        str | None, typer.Option("--rubric", help="The judge's rubric, or @file to read it.")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON here.")
    ] = None,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Write the report as HTML here.")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="A report (--json) to compare with: regressions."),
    ] = None,
    min_score: Annotated[
        list[str] | None,
        typer.Option(
            "--min-score",
            help="Fail below this pass rate (0 to 1), or NAME=X below a scorer's mean "
            "(repeatable).",
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option("--max-cost", min=0, help="Fail above this total cost (US dollars)."),
    ] = None,
    max_regressions: Annotated[
        int | None,
        typer.Option(
            "--max-regressions", min=0, help="Fail with more regressions than this (--baseline)."
        ),
    ] = None,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="Re-run each case with its recorded model answers (no model is called) and "
            "fail where the tool calls or the output changed.",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Run the agent on every case and score each run; exit 1 if a gate fails.

    Every case run is journaled in --db: keel runs show RUN_ID opens one."""
    try:
        rate, floors = parse_min_scores(min_score or [])
    except ValueError as exc:
        fail(str(exc))
    if max_regressions is not None and baseline is None:
        fail("--max-regressions compares with a baseline: give --baseline report.json")
    if replay and rate is None:
        rate = 1.0  # a replay passes only if nothing changed
    gates = Gates(rate, floors, max_cost, max_regressions)
    cases = guarded(lambda: Dataset.load(dataset))
    if tag:
        cases = cases.filter(tags=tag)
    if not len(cases):
        fail(f"{dataset} has no cases" + (f" tagged {', '.join(tag)}" if tag else ""))
    chosen, module = _load_agent(agent)
    scorers = (
        replay_scorers()
        if replay and not scorer
        else _scorers(scorer or [], module, judge_model, _rubric(rubric))
    )
    before = guarded(lambda: Report.from_json(baseline.read_text())) if baseline else None
    deps = getattr(module, "eval_deps", None)
    model = getattr(module, "eval_model", None)

    async def main() -> Report:
        async with make_runtime(db) as runtime:
            if replay:
                journals = await _journals(runtime, cases)

                def recorded(case: Case) -> Any:
                    return replay_model(case, journals.get(case.id))

                case_model: Any = recorded
            else:
                case_model = model
            return await evaluate(
                chosen,
                cases,
                scorers=scorers,
                runtime=runtime,
                repeats=repeats,
                concurrency=concurrency,
                deps=deps,
                model=case_model,
                progress=sys.stderr.isatty(),
            )

    report = guarded(lambda: asyncio.run(main()))
    out = stdout()
    print_report(report, out)
    comparison: Comparison | None = report.compare(before) if before is not None else None
    if comparison is not None:
        print_comparison(comparison, out)
    if json_path is not None:
        json_path.write_text(report.to_json(), encoding="utf-8")
        stderr().print(f"wrote the report to {json_path}", markup=False)
    if html_path is not None:
        html_path.write_text(report.to_html(), encoding="utf-8")
        stderr().print(f"wrote the HTML report to {html_path}", markup=False)
    failed = check_gates(report, comparison, gates)
    for line in failed:
        stderr().print(f"gate failed: {line}", markup=False, style="red")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@eval_app.command("export")
def export(
    *,
    run: Annotated[
        list[str] | None, typer.Option("--run", help="A run to export (repeatable).")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", "-l", help="Runs with this feedback label.")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Runs with feedback scored at least this.")
    ] = None,
    max_score: Annotated[
        float | None, typer.Option("--max-score", help="Runs with feedback scored at most this.")
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only runs of this agent.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only runs with this status.")
    ] = None,
    tool: Annotated[
        str | None, typer.Option("--tool", help="Only runs that called this tool.")
    ] = None,
    error: Annotated[
        str | None, typer.Option("--error", help="Only runs that ended with this reason code.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Runs since: an age (1h, 2d) or an ISO time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Runs before: an age or an ISO time.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many filtered runs.")
    ] = 100,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the cases here [default: stdout].")
    ] = None,
    db: DbOption = None,
) -> None:
    """Export runs as eval cases (JSON lines), for keel eval --replay.

    Runs by id, by feedback label or score, or by the filters of keel runs list; each case
    keeps the run's recorded model answers and tool results."""

    async def main() -> list[Case]:
        async with make_runtime(db) as runtime:
            return await export_cases(
                runtime,
                run_ids=run or (),
                label=label,
                min_score=min_score,
                max_score=max_score,
                agent=agent,
                status=status,  # type: ignore[arg-type]
                tool=tool,
                error=error,
                since=parse_moment(since, "--since"),
                until=parse_moment(until, "--until"),
                limit=limit,
                output=out,
            )

    if status is not None and status not in _STATUSES:
        fail(f"--status must be one of {', '.join(_STATUSES)}, got {status!r}")
    cases = guarded(lambda: asyncio.run(main()))
    if out is None:
        for case in cases:
            sys.stdout.write(json.dumps(case.to_dict(), default=str, ensure_ascii=False) + "\n")
    else:
        stderr().print(f"wrote {plural(len(cases), 'case')} to {out}", markup=False)

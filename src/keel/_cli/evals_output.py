"""What ``keel eval`` prints (the cases table, the summary, a comparison with a baseline)
and its gates (``--min-score``, ``--max-cost``, ``--max-regressions``)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from keel._cli.timeline import format_cost
from keel.evals._report import Comparison, Report

__all__ = ["Gates", "check_gates", "parse_min_scores", "print_comparison", "print_report"]


def print_report(report: Report, out: Console) -> None:
    """The cases as a table, the failures with their runs, then the aggregates."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("CASE", "RESULT", *(s.upper() for s in report.scorers)):
        table.add_column(column, no_wrap=True)
    for column in ("LATENCY", "TOKENS", "COST", "RUNS"):
        table.add_column(column, no_wrap=column != "RUNS", overflow="fold")
    for case in report.cases:
        scores = case.scores
        verdict = "[green]pass[/]" if case.passed else "[red]FAIL[/]"
        if report.repeats > 1:
            verdict += f" {case.pass_rate:.0%}"
        table.add_row(
            case.id,
            verdict,
            *(f"{scores[s]:.2f}" if s in scores else "-" for s in report.scorers),
            f"{case.latency_s:.3f}s",
            f"{case.tokens:,.0f}",
            format_cost(case.cost_usd),
            " ".join(case.run_ids),
        )
    out.print(table)
    failing = [c for c in report.cases if not c.passed]
    if failing:
        out.print()
        for case in failing:
            out.print(f"[red]FAIL[/] {case.id}", highlight=False)
            for line in case.failures():
                out.print(f"  {line}", markup=False)
            if case.run_ids:
                out.print(f"  see: keel runs show {case.run_ids[0]}", markup=False)
    out.print()
    passed = sum(1 for c in report.cases if c.passed)
    spread = (
        f" (spread {report.pass_rate_spread:.3f} over {report.repeats} repeats)"
        if report.repeats > 1
        else ""
    )
    lines = [
        f"cases      {passed} of {len(report.cases)} passed; pass rate {report.pass_rate:.1%}"
        + spread,
        "scores     "
        + ", ".join(f"{name} {value:.3f}" for name, value in report.mean_scores.items()),
        f"latency    p50 {report.latency_p50:.3f}s, p95 {report.latency_p95:.3f}s",
        f"per case   {report.tokens_per_case:,.0f} tokens, {format_cost(report.cost_per_case)}",
        f"cost       {format_cost(report.total_cost)} in all",
    ]
    for tag, values in report.scores_by_tag.items():
        shown = ", ".join(f"{n} {v:.3f}" for n, v in values.items())
        lines.append(f"tag {tag:<6} {shown}")
    for line in lines:
        out.print(line, markup=False)


def print_comparison(comparison: Comparison, out: Console) -> None:
    """Regressions and improvements case by case, and how the aggregates moved."""
    out.print()
    out.print(
        f"against the baseline: pass rate {comparison.pass_rate_before:.1%} -> "
        f"{comparison.pass_rate_after:.1%}; {len(comparison.regressions)} regression(s), "
        f"{len(comparison.improvements)} improvement(s)",
        markup=False,
    )
    for change in comparison.regressions:
        out.print(f"  [red]regressed[/] {change.id}: ", end="")
        out.print(change.detail, markup=False)
    for change in comparison.improvements:
        out.print(f"  [green]improved[/]  {change.id}: ", end="")
        out.print(change.detail, markup=False)
    if comparison.added:
        out.print(f"  new cases: {', '.join(comparison.added)}", markup=False)
    if comparison.removed:
        out.print(f"  cases gone: {', '.join(comparison.removed)}", markup=False)
    deltas = ", ".join(f"{n} {d:+.3f}" for n, d in comparison.score_deltas.items())
    if deltas:
        out.print(f"  scores: {deltas}", markup=False)


@dataclass(frozen=True, slots=True)
class Gates:
    """The CI gate: a floor on the pass rate and on scorers' means, a ceiling on the total
    cost and on regressions against the baseline."""

    min_pass_rate: float | None = None
    min_scores: tuple[tuple[str, float], ...] = ()
    max_cost: float | None = None
    max_regressions: int | None = None


def parse_min_scores(values: list[str]) -> tuple[float | None, tuple[tuple[str, float], ...]]:
    """``--min-score 0.9`` (the pass rate) and ``--min-score exact=0.95`` (a scorer's mean);
    raises ``ValueError`` saying what is wrong."""
    rate: float | None = None
    scores = []
    for value in values:
        name, sep, number = value.rpartition("=")
        try:
            floor = float(number)
        except ValueError:
            raise ValueError(
                f"--min-score takes a number from 0 to 1 (the pass rate) or NAME=NUMBER (a "
                f"scorer's mean), got {value!r}"
            ) from None
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"--min-score {value!r}: the number must be from 0 to 1")
        if sep:
            scores.append((name, floor))
        else:
            rate = floor
    return rate, tuple(scores)


def check_gates(report: Report, comparison: Comparison | None, gates: Gates) -> list[str]:
    """Each gate the report does not meet, as a line saying by how much."""
    failed = []
    if gates.min_pass_rate is not None and report.pass_rate < gates.min_pass_rate:
        failed.append(
            f"pass rate {report.pass_rate:.3f} is below --min-score {gates.min_pass_rate}"
        )
    means = report.mean_scores
    for name, floor in gates.min_scores:
        if name not in means:
            failed.append(f"--min-score {name}={floor}: no scorer is named {name!r}")
        elif means[name] < floor:
            failed.append(f"{name} mean {means[name]:.3f} is below --min-score {name}={floor}")
    if gates.max_cost is not None:
        total = report.total_cost
        if total is None:
            failed.append(
                f"the cost is unknown (a model has no price): --max-cost {gates.max_cost}"
            )
        elif total > gates.max_cost:
            failed.append(f"cost {format_cost(total)} is above --max-cost {gates.max_cost}")
    if gates.max_regressions is not None and comparison is not None:
        found = len(comparison.regressions)
        if found > gates.max_regressions:
            failed.append(
                f"{found} regression(s), more than --max-regressions {gates.max_regressions}"
            )
    return failed

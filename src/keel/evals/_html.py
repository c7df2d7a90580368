"""An eval report as one self-contained HTML page: inline CSS, no scripts, no external
assets, every value escaped."""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any

from keel._cli.timeline import format_cost, format_time

if TYPE_CHECKING:
    from keel.evals._report import CaseResult, Report

__all__ = ["render_html"]

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem; color: #1d1d1f; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left;
         vertical-align: top; }
th { background: #f4f4f5; }
.pass { color: #137333; font-weight: 600; } .fail { color: #b3261e; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: 12px ui-monospace, monospace; } pre { white-space: pre-wrap; margin: 0; }
details { margin: .2rem 0; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _verdict(passed: bool) -> str:
    return '<span class="pass">pass</span>' if passed else '<span class="fail">FAIL</span>'


def _row(cells: list[str], header: bool = False) -> str:
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _case_rows(case: CaseResult, scorers: tuple[str, ...]) -> str:
    scores = case.scores
    cells = [
        f"<code>{_e(case.id)}</code>",
        _verdict(case.passed),
        _e(", ".join(case.tags)),
        *[f'<span class="num">{scores[n]:.2f}</span>' if n in scores else "" for n in scorers],
        f"{case.latency_s:.3f}s",
        f"{case.tokens:,.0f}",
        _e(format_cost(case.cost_usd)),
        "<br>".join(f"<code>{_e(run)}</code>" for run in case.run_ids),
    ]
    details = []
    for repeat in case.repeats:
        lines = [
            f"repeat {repeat.repeat}: {repeat.status}, run {repeat.run_id or '-'}",
            *(
                f"  {s.name} = {s.value:.2f} {'pass' if s.passed else 'FAIL'}  {s.detail}"
                for s in repeat.scores
            ),
        ]
        if repeat.error:
            lines.append(f"  error: {repeat.error}")
        if repeat.output is not None:
            shown = (
                repeat.output
                if isinstance(repeat.output, str)
                else json.dumps(repeat.output, default=str)
            )
            lines.append(f"  output: {shown}")
        details.append("\n".join(lines))
    detail = (
        f'<tr class="detail"><td colspan="{len(cells)}"><details><summary>runs and scores'
        f"</summary><pre>{_e(chr(10).join(details))}</pre></details></td></tr>"
    )
    return (
        f'<tr class="case" id="case-{_e(case.id)}">'
        + "".join(f"<td>{c}</td>" for c in cells)
        + "</tr>"
        + detail
    )


def render_html(report: Report) -> str:
    """The page for ``report``."""
    summary = report.summary()
    facts = [
        ("dataset", report.dataset),
        ("agent", report.agent),
        ("when", format_time(report.created_at) if report.created_at else "-"),
        ("cases", f"{summary['passed']} of {summary['cases']} passed"),
        (
            "pass rate",
            f"{report.pass_rate:.1%} (spread over {report.repeats} repeat(s): "
            f"{report.pass_rate_spread:.3f})",
        ),
        ("latency", f"p50 {report.latency_p50:.3f}s, p95 {report.latency_p95:.3f}s"),
        ("tokens per case", f"{report.tokens_per_case:,.0f}"),
        (
            "cost",
            f"{format_cost(report.cost_per_case)} per case, "
            f"{format_cost(report.total_cost)} in all",
        ),
    ]
    overview = "".join(_row([_e(k), _e(v)]) for k, v in facts)
    scores = _row(["scorer", "mean"], header=True) + "".join(
        _row([_e(n), f'<span class="num">{v:.3f}</span>']) for n, v in report.mean_scores.items()
    )
    by_tag = ""
    if report.scores_by_tag:
        by_tag = (
            "<h2>By tag</h2><table>"
            + _row(["tag", *map(_e, report.scorers)], header=True)
            + "".join(
                _row([_e(tag), *(f"{values[n]:.3f}" for n in report.scorers)])
                for tag, values in report.scores_by_tag.items()
            )
            + "</table>"
        )
    head = _row(
        ["case", "result", "tags", *map(_e, report.scorers), "latency", "tokens", "cost", "runs"],
        header=True,
    )
    cases = "".join(_case_rows(c, report.scorers) for c in report.cases)
    title = f"Keel eval: {report.dataset} on {report.agent}"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1><table>{overview}</table>"
        f"<h2>Scores</h2><table>{scores}</table>{by_tag}"
        f'<h2>Cases</h2><table class="cases">{head}{cases}</table>'
        "<p>Open a run's timeline with <code>keel runs show RUN_ID</code>.</p>"
        "</body></html>\n"
    )

"""The report: aggregates over cases, repeats and tags, JSON round trip, HTML, and the
comparison with a baseline."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from keel.evals import CaseResult, RepeatResult, Report, Score
from keel.evals._report import percentile


def repeat(
    n: int, passed: bool, value: float, latency: float = 0.1, cost: float | None = 0.01
) -> RepeatResult:
    return RepeatResult(
        repeat=n,
        run_id=f"run_{n}_{value}",
        status="completed",
        scores=(Score("exact", value, passed, "" if passed else "wrong"),),
        passed=passed,
        latency_s=latency,
        tokens=100,
        cost_usd=cost,
        output=f"out {value}",
    )


def report(*cases: CaseResult, repeats: int = 2) -> Report:
    return Report(
        dataset="d.jsonl",
        agent="support",
        repeats=repeats,
        scorers=("exact",),
        cases=cases,
        created_at=1.0,
    )


def case(case_id: str, *repeats: RepeatResult, tags: tuple[str, ...] = ()) -> CaseResult:
    return CaseResult(id=case_id, tags=tags, repeats=repeats)


def test_the_aggregates_over_cases_repeats_and_tags() -> None:
    done = report(
        case("a", repeat(0, True, 1.0, 0.1), repeat(1, True, 1.0, 0.2), tags=("x",)),
        case("b", repeat(0, True, 1.0, 0.3), repeat(1, False, 0.0, 0.4), tags=("x", "y")),
        case("c", repeat(0, False, 0.5, 1.0, None), repeat(1, False, 0.0, 2.0), tags=("y",)),
    )
    assert done.pass_rate == pytest.approx(3 / 6)
    assert done.pass_rates_by_repeat == [pytest.approx(2 / 3), pytest.approx(1 / 3)]
    assert done.pass_rate_spread == pytest.approx(1 / 6)
    assert done.mean_scores == {"exact": pytest.approx(3.5 / 6)}
    assert done.scores_by_tag == {"x": {"exact": 0.75}, "y": {"exact": 0.375}}
    assert [c.passed for c in done.cases] == [True, False, False]
    assert done.case("b").pass_rate == 0.5
    assert done.case("b").scores == {"exact": 0.5}
    assert done.latency_p50 == pytest.approx(0.35)
    assert done.latency_p95 == pytest.approx(percentile([0.1, 0.2, 0.3, 0.4, 1.0, 2.0], 0.95))
    assert done.tokens_per_case == 100
    assert done.total_cost is None
    assert done.cost_per_case is None
    assert done.case("a").cost_usd == pytest.approx(0.01)
    assert done.case("c").cost_usd is None
    assert done.case("b").failures() == ["repeat 1 (run run_1_0.0): exact: wrong"]
    with pytest.raises(KeyError, match="no case 'z'"):
        done.case("z")


def test_percentiles_interpolate() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


def test_a_report_survives_json() -> None:
    done = report(case("a", repeat(0, True, 1.0), repeat(1, False, 0.2), tags=("x",)))
    again = Report.from_json(done.to_json())
    assert again == done
    assert '"pass_rate": 0.5' in done.to_json()
    with pytest.raises(ValueError, match="not a Keel eval report"):
        Report.from_json('{"version": 1}')
    with pytest.raises(ValueError, match="unknown report version"):
        Report.from_json('{"version": 9}')


class Cases(HTMLParser):
    """The case rows of a report page, and any reference to something outside it."""

    def __init__(self) -> None:
        super().__init__()
        self.cases: list[str] = []
        self.outside: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append(tag)
        if tag == "tr" and found.get("class") == "case":
            self.cases.append(str(found["id"]))
        for name in ("src", "href"):
            if found.get(name):
                self.outside.append(str(found[name]))


def test_the_html_report_is_one_page_listing_every_case() -> None:
    done = report(
        case("a<script>", repeat(0, True, 1.0), repeat(1, True, 1.0), tags=("x",)),
        case("b", repeat(0, False, 0.0), repeat(1, False, 0.0)),
    )
    page = done.to_html()
    parser = Cases()
    parser.feed(page)
    assert parser.cases == ["case-a<script>", "case-b"]
    assert parser.outside == []
    assert "script" not in parser.tags
    assert "link" not in parser.tags
    assert "run_0_1.0" in page
    assert "FAIL" in page
    assert "<style>" in page


def test_comparing_with_a_baseline_finds_regressions_and_improvements() -> None:
    baseline = report(
        case("same", repeat(0, True, 1.0)),
        case("broke", repeat(0, True, 1.0)),
        case("fixed", repeat(0, False, 0.0)),
        case("worse", repeat(0, False, 0.6)),
        case("gone", repeat(0, True, 1.0)),
        repeats=1,
    )
    now = report(
        case("same", repeat(0, True, 1.0)),
        case("broke", repeat(0, False, 0.0)),
        case("fixed", repeat(0, True, 1.0)),
        case("worse", repeat(0, False, 0.3)),
        case("new", repeat(0, True, 1.0)),
        repeats=1,
    )
    comparison = now.compare(baseline)
    assert [c.id for c in comparison.regressions] == ["broke", "worse"]
    assert comparison.regressions[0].detail == "passed, now fails; exact 1.00 -> 0.00"
    assert comparison.regressions[1].detail == "scores dropped; exact 0.60 -> 0.30"
    assert [c.id for c in comparison.improvements] == ["fixed"]
    assert comparison.added == ("new",)
    assert comparison.removed == ("gone",)
    assert comparison.pass_rate_before == 0.6
    assert comparison.pass_rate_after == 0.6
    assert now.compare(baseline, tolerance=0.5).regressions[-1].id == "broke"
    assert len(now.compare(baseline, tolerance=0.5).regressions) == 1

"""An eval's report: each case's scores, runs, latency, tokens and cost per repeat, the
aggregates (pass rate and its spread over repeats, mean score per scorer and per tag,
latency percentiles), JSON in and out, and the comparison with a baseline."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from keel.evals._sample import Score

__all__ = ["CaseChange", "CaseResult", "Comparison", "RepeatResult", "Report"]

_VERSION = 1


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` percentile (0..1) of ``values``, linearly interpolated; 0 for none."""
    items = sorted(values)
    if not items:
        return 0.0
    at = (len(items) - 1) * share
    low, high = math.floor(at), math.ceil(at)
    return items[low] + (items[high] - items[low]) * (at - low)


@dataclass(frozen=True, slots=True, kw_only=True)
class RepeatResult:
    """One run of a case: its run id (``keel runs show RUN_ID``), status, scores, whether
    every score passed, its latency (seconds), tokens and cost (``None``: unknown), its
    output as JSON data, and the error that kept it from running, if any."""

    repeat: int
    run_id: str | None
    status: str
    scores: tuple[Score, ...]
    passed: bool
    latency_s: float
    tokens: int
    cost_usd: float | None
    output: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """A case's results over its repeats; it ``passed`` when every repeat did."""

    id: str
    tags: tuple[str, ...]
    repeats: tuple[RepeatResult, ...]

    @property
    def passed(self) -> bool:
        """Whether every repeat passed."""
        return bool(self.repeats) and all(r.passed for r in self.repeats)

    @property
    def pass_rate(self) -> float:
        """The share of repeats that passed."""
        return _mean(float(r.passed) for r in self.repeats)

    @property
    def run_ids(self) -> list[str]:
        """The run of each repeat (runs that never started have none)."""
        return [r.run_id for r in self.repeats if r.run_id is not None]

    @property
    def scores(self) -> dict[str, float]:
        """The mean value of each scorer over the repeats."""
        names: dict[str, list[float]] = {}
        for repeat in self.repeats:
            for score in repeat.scores:
                names.setdefault(score.name, []).append(score.value)
        return {name: _mean(values) for name, values in names.items()}

    @property
    def latency_s(self) -> float:
        """Mean seconds per run."""
        return _mean(r.latency_s for r in self.repeats)

    @property
    def tokens(self) -> float:
        """Mean tokens per run."""
        return _mean(r.tokens for r in self.repeats)

    @property
    def cost_usd(self) -> float | None:
        """Mean cost per run; ``None`` if any run's cost is unknown."""
        costs = [r.cost_usd for r in self.repeats]
        if any(c is None for c in costs):
            return None
        return _mean(c for c in costs if c is not None)

    def failures(self) -> list[str]:
        """What failed, one line per failing score or error."""
        lines = []
        for r in self.repeats:
            where = f"repeat {r.repeat} (run {r.run_id})" if r.run_id else f"repeat {r.repeat}"
            if r.error:
                lines.append(f"{where}: {r.error}")
            lines += [f"{where}: {s.name}: {s.detail}" for s in r.scores if not s.passed]
        return lines


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseChange:
    """How one case changed against the baseline."""

    id: str
    before_passed: bool | None
    after_passed: bool | None
    before: Mapping[str, float]
    after: Mapping[str, float]
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """A report against a baseline, case by case: a regression is a case that passed and now
    fails, or whose score on some scorer dropped by more than the tolerance; an improvement
    is the reverse. ``added`` and ``removed`` are case ids in only one of the two."""

    regressions: tuple[CaseChange, ...]
    improvements: tuple[CaseChange, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    pass_rate_before: float
    pass_rate_after: float
    score_deltas: Mapping[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """What :func:`keel.evals.evaluate` found. ``to_json``/``from_json`` keep it,
    ``to_html`` shows it, ``compare`` sets it against a baseline."""

    dataset: str
    agent: str
    repeats: int
    scorers: tuple[str, ...]
    cases: tuple[CaseResult, ...]
    created_at: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def case(self, case_id: str) -> CaseResult:
        """The results of one case, by id."""
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(f"no case {case_id!r} in this report")

    @property
    def _runs(self) -> list[RepeatResult]:
        return [r for c in self.cases for r in c.repeats]

    @property
    def pass_rate(self) -> float:
        """The share of case runs (all repeats) that passed."""
        return _mean(float(r.passed) for r in self._runs)

    @property
    def pass_rates_by_repeat(self) -> list[float]:
        """The pass rate of each repeat over every case."""
        return [
            _mean(float(c.repeats[i].passed) for c in self.cases if i < len(c.repeats))
            for i in range(self.repeats)
        ]

    @property
    def pass_rate_spread(self) -> float:
        """The standard deviation of the pass rate over repeats (0 for one repeat)."""
        rates = self.pass_rates_by_repeat
        return statistics.pstdev(rates) if len(rates) > 1 else 0.0

    @property
    def mean_scores(self) -> dict[str, float]:
        """Each scorer's mean value over every case run."""
        return {
            name: _mean(s.value for r in self._runs for s in r.scores if s.name == name)
            for name in self.scorers
        }

    @property
    def scores_by_tag(self) -> dict[str, dict[str, float]]:
        """For each tag, each scorer's mean value over the runs of cases with that tag."""
        tags = sorted({t for c in self.cases for t in c.tags})
        return {
            tag: {
                name: _mean(
                    s.value
                    for c in self.cases
                    if tag in c.tags
                    for r in c.repeats
                    for s in r.scores
                    if s.name == name
                )
                for name in self.scorers
            }
            for tag in tags
        }

    @property
    def latency_p50(self) -> float:
        """The median seconds per case run."""
        return percentile([r.latency_s for r in self._runs], 0.5)

    @property
    def latency_p95(self) -> float:
        """The 95th percentile of seconds per case run."""
        return percentile([r.latency_s for r in self._runs], 0.95)

    @property
    def tokens_per_case(self) -> float:
        """Mean tokens per case run."""
        return _mean(r.tokens for r in self._runs)

    @property
    def total_cost(self) -> float | None:
        """What every run cost together; ``None`` if any cost is unknown."""
        costs = [r.cost_usd for r in self._runs]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    @property
    def cost_per_case(self) -> float | None:
        """Mean cost per case run; ``None`` if any cost is unknown."""
        total = self.total_cost
        return None if total is None or not self._runs else total / len(self._runs)

    def summary(self) -> dict[str, Any]:
        """The aggregates as JSON data."""
        return {
            "cases": len(self.cases),
            "passed": sum(1 for c in self.cases if c.passed),
            "pass_rate": self.pass_rate,
            "pass_rates_by_repeat": self.pass_rates_by_repeat,
            "pass_rate_spread": self.pass_rate_spread,
            "mean_scores": self.mean_scores,
            "scores_by_tag": self.scores_by_tag,
            "latency_p50_s": self.latency_p50,
            "latency_p95_s": self.latency_p95,
            "tokens_per_case": self.tokens_per_case,
            "cost_per_case": self.cost_per_case,
            "total_cost": self.total_cost,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON (read back by :meth:`from_json`), with its aggregates."""
        data = {
            "version": _VERSION,
            "dataset": self.dataset,
            "agent": self.agent,
            "repeats": self.repeats,
            "scorers": list(self.scorers),
            "created_at": self.created_at,
            "metadata": dict(self.metadata),
            "summary": self.summary(),
            "cases": [
                {
                    "id": c.id,
                    "tags": list(c.tags),
                    "passed": c.passed,
                    "repeats": [asdict(r) for r in c.repeats],
                }
                for c in self.cases
            ],
        }
        return json.dumps(data, indent=indent, default=str, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Report:
        """A report from :meth:`to_json`'s output; raises ``ValueError`` saying what is
        wrong for anything else."""
        try:
            data = json.loads(text)
            if data.get("version") != _VERSION:
                raise ValueError(f"unknown report version {data.get('version')!r}")
            cases = tuple(
                CaseResult(
                    id=str(c["id"]),
                    tags=tuple(c.get("tags", ())),
                    repeats=tuple(
                        RepeatResult(
                            **{
                                **r,
                                "scores": tuple(Score(**s) for s in r["scores"]),
                            }
                        )
                        for r in c["repeats"]
                    ),
                )
                for c in data["cases"]
            )
            return cls(
                dataset=str(data["dataset"]),
                agent=str(data["agent"]),
                repeats=int(data["repeats"]),
                scorers=tuple(data["scorers"]),
                cases=cases,
                created_at=float(data.get("created_at", 0.0)),
                metadata=data.get("metadata") or {},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a Keel eval report ({type(exc).__name__}: {exc})") from None

    def to_html(self) -> str:
        """The report as one self-contained HTML page (no scripts or files from elsewhere)."""
        from keel.evals._html import render_html

        return render_html(self)

    def compare(self, baseline: Report, *, tolerance: float = 0.0) -> Comparison:
        """This report against ``baseline``, case by case (see :class:`Comparison`)."""
        before = {c.id: c for c in baseline.cases}
        after = {c.id: c for c in self.cases}
        regressions, improvements = [], []
        for case_id, now in after.items():
            was = before.get(case_id)
            if was is None:
                continue
            drops = {
                n: v - was.scores[n]
                for n, v in now.scores.items()
                if n in was.scores and abs(v - was.scores[n]) > tolerance
            }
            worse = [n for n, d in drops.items() if d < 0]
            better = [n for n, d in drops.items() if d > 0]
            change: dict[str, Any] = {
                "id": case_id,
                "before_passed": was.passed,
                "after_passed": now.passed,
                "before": was.scores,
                "after": now.scores,
            }
            if (was.passed and not now.passed) or (worse and now.passed <= was.passed):
                why = "passed, now fails" if was.passed and not now.passed else "scores dropped"
                lines = [f"{n} {was.scores[n]:.2f} -> {now.scores[n]:.2f}" for n in worse]
                regressions.append(CaseChange(**change, detail="; ".join([why, *lines])))
            elif (now.passed and not was.passed) or better:
                why = "failed, now passes" if now.passed and not was.passed else "scores rose"
                lines = [f"{n} {was.scores[n]:.2f} -> {now.scores[n]:.2f}" for n in better]
                improvements.append(CaseChange(**change, detail="; ".join([why, *lines])))
        old, new = baseline.mean_scores, self.mean_scores
        return Comparison(
            regressions=tuple(regressions),
            improvements=tuple(improvements),
            added=tuple(i for i in after if i not in before),
            removed=tuple(i for i in before if i not in after),
            pass_rate_before=baseline.pass_rate,
            pass_rate_after=self.pass_rate,
            score_deltas={n: new[n] - old[n] for n in new if n in old},
        )

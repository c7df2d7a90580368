"""Evaluating agents on datasets: cases (:class:`Case`, :class:`Dataset`), scorers (exact,
contains, regex, JSON match, tool calls, the final state of the tools' data, an LLM judge, or
any function), :func:`evaluate` (every case run is a journaled Keel run), and the
:class:`Report` with its JSON, HTML and comparison with a baseline. Production runs become
cases with :func:`export_cases`, and :func:`replay_model` plays a recorded run's model answers
back so a case re-runs without calling a model.

::

    from keel.evals import Contains, Dataset, ToolCalls, evaluate_sync

    report = evaluate_sync(agent, Dataset.load("cases.jsonl"), scorers=[Contains(), ToolCalls()])
    print(report.pass_rate)
"""

from keel.evals._case import Case, Dataset, DatasetError
from keel.evals._evaluate import evaluate, evaluate_sync
from keel.evals._export import export_cases, replay_model, replay_scorers
from keel.evals._judge import Judge, Verdict
from keel.evals._report import CaseChange, CaseResult, Comparison, RepeatResult, Report
from keel.evals._sample import Sample, Score, Scorer
from keel.evals._scorers import Contains, Exact, JSONMatch, Regex, State, ToolCalls
from keel.testing._calls import ExpectedCall, ToolCallRecord
from keel.testing._matchers import ANY, Containing, Partial

__all__ = [
    "ANY",
    "Case",
    "CaseChange",
    "CaseResult",
    "Comparison",
    "Containing",
    "Contains",
    "Dataset",
    "DatasetError",
    "Exact",
    "ExpectedCall",
    "JSONMatch",
    "Judge",
    "Partial",
    "Regex",
    "RepeatResult",
    "Report",
    "Sample",
    "Score",
    "Scorer",
    "State",
    "ToolCallRecord",
    "ToolCalls",
    "Verdict",
    "evaluate",
    "evaluate_sync",
    "export_cases",
    "replay_model",
    "replay_scorers",
]

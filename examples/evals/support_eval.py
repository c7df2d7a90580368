"""The support agent of examples/support.py, set up for ``keel eval``.

    keel eval examples/evals/support_cases.jsonl --agent examples/evals/support_eval.py:agent

``keel eval`` reads three optional names from the agent's module: ``eval_deps(case)`` gives
each case run a fresh desk (so a refund in one case does not leak into the next),
``eval_scorers`` are the scorers used when no ``--scorer`` is given, and ``eval_model(case)``
(not needed here) would choose each case run's model.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.support import SupportDesk, agent

from keel.evals import Case, Contains, Sample, State, ToolCalls

__all__ = ["agent", "eval_deps", "eval_scorers"]


def eval_deps(case: Case) -> SupportDesk:
    """A fresh desk for each case run."""
    return SupportDesk.demo()


def refunds_as_expected(sample: Sample) -> bool:
    """The desk holds the refunds the case expects (``metadata.refunds``: order ids)."""
    expected = sample.case.metadata.get("refunds", [])
    made = sorted(refund.order_id for refund in sample.deps.refunds.values())
    return made == sorted(expected)


eval_scorers = [Contains(), ToolCalls("subset"), State(refunds_as_expected, name="refunds")]

"""The retail test tasks as a :mod:`keel.evals` dataset, scored on the final database.

::

    report = await evaluate(
        build_agent(corpus),
        retail_dataset(corpus),
        scorers=[State(state_matches)],
        deps=deps_for,      # a fresh database per case
        model=model_for,    # the case's scripted model (omit it to evaluate a real model)
    )

Each case carries the corpora folder and its task's number in ``metadata``, so ``deps_for``,
``model_for`` and ``state_matches`` need nothing else. The published database and tasks are
read once per folder (:func:`suite`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.tau_retail.corpus import corpus_root, retail_dir
from examples.tau_retail.db import RetailDB
from examples.tau_retail.tasks import (
    RetailTask,
    Split,
    expected_state,
    final_answer,
    grouped_turns,
    load_tasks,
    one_call_per_turn,
    scripted_model,
)

# keel.evals arrives on its own branch; until it is merged this module is only imported by a
# test that skips without it.
from keel import evals
from keel.ports import Model
from keel.testing import ExpectedCall

__all__ = [
    "RetailSuite",
    "deps_for",
    "model_for",
    "retail_dataset",
    "state_matches",
    "suite",
]


@dataclass(frozen=True, slots=True)
class RetailSuite:
    """One corpora folder's published database and tasks of one split, read once."""

    corpus: str
    split: Split
    pristine: RetailDB
    tasks: tuple[RetailTask, ...]

    def task(self, case: evals.Case) -> RetailTask:
        """The task a case was made from."""
        return self.tasks[int(case.metadata["number"])]


@functools.cache
def suite(corpus: str, split: Split = "test") -> RetailSuite:
    """The suite of ``corpus`` (a corpora folder, as text), read on first use."""
    retail_dir(corpus)
    return RetailSuite(
        corpus=corpus,
        split=split,
        pristine=RetailDB.load(corpus),
        tasks=tuple(load_tasks(corpus, split)),
    )


def _suite_of(case: evals.Case) -> RetailSuite:
    return suite(str(case.metadata["corpus"]), case.metadata["split"])


def retail_dataset(
    corpus: Path | str | None = None, *, split: Split = "test", grouped: bool = False
) -> evals.Dataset:
    """One case per task: the simulated user's script as input, the expected actions (names
    and arguments) as ``expected_tools``, what the agent must say as ``reference``.

    ``grouped`` makes :func:`model_for` put consecutive calls of one kind in one turn.
    """
    root = str(corpus_root(corpus))
    cases = []
    for task in suite(root, split).tasks:
        kinds = {"writes" if any(a.writes for a in task.actions) else "reads only"}
        cases.append(
            evals.Case(
                id=task.id,
                input=task.instruction,
                reference=final_answer(task),
                expected_tools=[
                    ExpectedCall(name=a.name, arguments=dict(a.kwargs)) for a in task.actions
                ],
                tags=sorted({"tau-bench", "retail", split, *kinds}),
                metadata={
                    "corpus": root,
                    "split": split,
                    "number": task.number,
                    "user_id": task.user_id,
                    "outputs": list(task.outputs),
                    "grouped": grouped,
                },
            )
        )
    return evals.Dataset(cases=cases)


def deps_for(case: evals.Case) -> RetailDB:
    """A fresh database for the case, equal to the published one."""
    return _suite_of(case).pristine.fresh()


def model_for(case: evals.Case) -> Model:
    """A scripted model making the case's expected calls, then answering."""
    task = _suite_of(case).task(case)
    turns = grouped_turns(task) if case.metadata.get("grouped") else one_call_per_turn(task)
    return scripted_model(task, turns)


def state_matches(sample: evals.Sample) -> bool:
    """Whether the run left the database its task's expected actions give."""
    found: Any = sample.deps
    if not isinstance(found, RetailDB):
        return False
    where = _suite_of(sample.case)
    return found.same_state(expected_state(where.pristine, where.task(sample.case)))

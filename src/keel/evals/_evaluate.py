"""Running an agent over a dataset: each case (times ``repeats``) is a journaled run on the
runtime's store, scored by every scorer, a few at a time."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from keel._agent import Agent, ModelSpec
from keel._core.events import RunFinished, RunStarted
from keel._core.fold import apply, start
from keel._core.messages import Message
from keel._runtime.records import record_of
from keel._runtime.running import UNSET
from keel._runtime.runtime import Runtime
from keel.errors import UsageError
from keel.evals._case import Case, Dataset
from keel.evals._report import CaseResult, RepeatResult, Report
from keel.evals._sample import Sample, Score, Scorer, output_data, score_with, scorer_name
from keel.stores._memory import MemoryStore
from keel.testing._calls import calls_from_events

__all__ = ["evaluate", "evaluate_sync", "seed_thread"]

HISTORY_AGENT = "eval-history"
Progress = Callable[[int, int], None]


async def seed_thread(runtime: Runtime, thread_id: str, history: Sequence[Message]) -> str:
    """Give a new thread ``history`` as its earlier conversation: one completed run of agent
    ``eval-history`` holding those messages (so the case's run reads them as any run reads
    its thread). Returns that run's id."""
    now = runtime.clock.now()
    run_id = f"run_hist_{uuid.uuid4().hex}"
    first = next((m for m in history if getattr(m, "role", "") == "user"), None)
    started = RunStarted(
        at=now,
        run_id=run_id,
        thread_id=thread_id,
        agent=HISTORY_AGENT,
        model="none",
        input=str(getattr(first, "content", "") or "(history)"),
        history_seq=0,
    )
    finished = RunFinished(at=now, status="completed")
    state = apply(start(started), finished)
    await runtime.store.append(
        run_id,
        [started, finished],
        expected_seq=0,
        record=record_of(state, 2),
        thread_messages=list(history),
    )
    return run_id


def _dataset(dataset: Dataset | Iterable[Case] | str | os.PathLike[str]) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    if isinstance(dataset, str | os.PathLike):
        return Dataset.load(dataset)
    return Dataset(list(dataset))


class _Evaluation:
    def __init__(
        self,
        agent: Agent[Any],
        runtime: Runtime,
        scorers: Sequence[Scorer],
        deps: Any,
        model: Callable[[Case], ModelSpec] | None,
    ) -> None:
        self.agent = agent
        self.runtime = runtime
        self.scorers = scorers
        self.deps = deps
        self.model = model

    async def one(self, case: Case, repeat: int) -> RepeatResult:
        began = time.perf_counter()
        deps = None
        try:
            deps = self.deps(case) if callable(self.deps) else self.deps
            thread = None
            if case.history:
                thread = f"eval-{uuid.uuid4().hex[:16]}"
                await seed_thread(self.runtime, thread, case.history)
            result = await self.runtime.run(
                self.agent,
                case.input,
                thread=thread,
                deps=UNSET if deps is None else deps,
                model=None if self.model is None else self.model(case),
            )
            latency = time.perf_counter() - began
            events = await self.runtime.store.load(result.run_id)
        except Exception as exc:  # noqa: BLE001 - a case that cannot run fails alone
            return RepeatResult(
                repeat=repeat,
                run_id=None,
                status="error",
                scores=(),
                passed=False,
                latency_s=time.perf_counter() - began,
                tokens=0,
                cost_usd=0.0,
                error=f"{type(exc).__name__}: {exc}",
            )
        sample = Sample(
            case=case,
            result=result,
            output=result.output_or_none,
            tool_calls=calls_from_events(events),
            deps=self.agent.deps if deps is None else deps,
            repeat=repeat,
            events=tuple(events),
            runtime=self.runtime,
        )
        scores: list[Score] = [await score_with(s, sample) for s in self.scorers]
        passed = all(s.passed for s in scores) if scores else result.ok
        return RepeatResult(
            repeat=repeat,
            run_id=result.run_id,
            status=result.status,
            scores=tuple(scores),
            passed=passed,
            latency_s=latency,
            tokens=result.usage.total_tokens,
            cost_usd=result.cost_usd,
            output=output_data(result.output_or_none),
        )


def _progress_bar(total: int) -> tuple[Progress, Callable[[], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("eval", total=total)
    bar.start()
    return (lambda done, _total: bar.update(task, completed=done)), bar.stop


async def evaluate(
    agent: Agent[Any],
    dataset: Dataset | Iterable[Case] | str | os.PathLike[str],
    *,
    scorers: Sequence[Scorer],
    runtime: Runtime | None = None,
    repeats: int = 1,
    concurrency: int = 4,
    deps: Any = None,
    model: Callable[[Case], ModelSpec] | None = None,
    progress: bool | Progress = False,
) -> Report:
    """Run ``agent`` on every case of ``dataset`` (``repeats`` times each, ``concurrency``
    runs at a time) and score each run with every scorer.

    Each run is a journaled run on ``runtime``'s store (default: a runtime on a fresh
    :class:`keel.testing.MemoryStore`, with settings from the environment, so models named
    by string find their API keys): the report keeps each run's id, so a failing case
    opens with ``keel runs show RUN_ID``. A case's ``history`` becomes the earlier
    conversation of a thread of its own. ``deps`` is the tools' dependencies: ``None`` (the
    agent's), a value, or a callable ``(Case) -> deps`` making fresh ones for each run (to
    score the final state of the tools' data). ``model`` is ``None`` (the agent's) or a
    callable ``(Case) -> model`` (e.g. a :class:`keel.testing.ScriptedModel` built from the
    case). ``progress``: ``True`` draws a progress bar on stderr, or pass a callable
    ``(done, total)``.

    A repeat passes when every scorer passes (with no scorers: when the run completed); an
    error that keeps a run from starting fails it with the error kept in the report.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise UsageError(f"repeats must be a whole number of at least 1, got {repeats!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"concurrency must be a whole number of at least 1, got {concurrency!r}")
    if not isinstance(agent, Agent):
        raise UsageError(f"evaluate() needs a keel.Agent, got {type(agent).__name__}")
    if model is not None and not callable(model):
        raise UsageError("model must be a callable (Case) -> model; set a fixed one on the agent")
    cases = _dataset(dataset)
    names = list(dict.fromkeys(scorer_name(s) for s in scorers))
    if len(names) != len(scorers):
        raise UsageError("two scorers have the same name; give one a name=... of its own")
    own = runtime is None
    rt = runtime or Runtime(store=MemoryStore(), recover_on_start=False)
    evaluation = _Evaluation(agent, rt, scorers, deps, model)
    total = len(cases) * repeats
    report_progress, stop = (None, None)
    if progress is True:
        report_progress, stop = _progress_bar(total)
    elif callable(progress):
        report_progress = progress
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def guarded(case: Case, repeat: int) -> RepeatResult:
        nonlocal done
        async with gate:
            outcome = await evaluation.one(case, repeat)
        done += 1
        if report_progress is not None:
            report_progress(done, total)
        return outcome

    try:
        outcomes = await asyncio.gather(
            *(guarded(case, r) for case in cases for r in range(repeats))
        )
        created = rt.clock.now()
    finally:
        if stop is not None:
            stop()
        if own:
            await rt.close()
    results = [
        CaseResult(
            id=case.id,
            tags=tuple(case.tags),
            repeats=tuple(outcomes[i * repeats : (i + 1) * repeats]),
        )
        for i, case in enumerate(cases)
    ]
    return Report(
        dataset=cases.name,
        agent=agent.name,
        repeats=repeats,
        scorers=tuple(names),
        cases=tuple(results),
        created_at=created,
    )


def evaluate_sync(
    agent: Agent[Any],
    dataset: Dataset | Iterable[Case] | str | os.PathLike[str],
    **options: Any,
) -> Report:
    """:func:`evaluate` for code without an event loop (takes the same options)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(evaluate(agent, dataset, **options))
    raise UsageError("evaluate_sync() was called from a running event loop; use 'await evaluate'")

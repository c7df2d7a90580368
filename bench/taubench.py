"""Throughput of the tau-bench retail suite: every test task's expected actions made by a
scripted model through a runtime, and the final database scored, in tasks per second.

    python bench/taubench.py                    # ../shared/corpora, or KEEL_CORPORA
    python bench/taubench.py --corpus PATH      # the corpora folder (holding tau-bench/)
    python bench/taubench.py --smoke            # a few tasks once; the test suite runs this

Measured in one process, the stores taking turns in each repeat so that both see the same
machine: the suite one task at a time and all tasks at once, on the in-memory store and on
SQLite (a file, ``synchronous=FULL``), and, as the floor, the same actions applied by calling
the tools directly (no runtime). Each task is scored (its database against the expected one);
a task that does not pass stops the benchmark.

Last, the same tasks as a ``keel.evals`` dataset: ``evaluate()`` runs them 4 at a time and
scores each on the final database and the tool calls (eval throughput, cases per second, on
the in-memory store and on SQLite).

The retail tools are plain functions, which Keel runs each in a thread of its own so that a
slow one cannot block the event loop. The same suite with the tools wrapped as ``async``
functions (``async tools``: the same work, on the event loop) shows what those threads cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the example package lives beside bench/, not in keel
    sys.path.insert(0, str(ROOT))

from examples.tau_retail import (  # noqa: E402
    RETAIL_TOOLS,
    CorpusMissingError,
    RetailDB,
    RetailTask,
    build_agent,
    corpus_root,
    expected_state,
    load_tasks,
    replay,
    retail_dir,
)
from examples.tau_retail.evals import (  # noqa: E402
    deps_for,
    model_for,
    retail_dataset,
    state_matches,
)

from keel import Agent, Runtime, Tool, evals  # noqa: E402
from keel.testing import MemoryStore  # noqa: E402


async def suite(
    runtime: Runtime,
    agent: Agent[str],
    tasks: list[RetailTask],
    pristine: RetailDB,
    *,
    at_once: bool,
) -> None:
    if at_once:
        replays = await asyncio.gather(*(replay(runtime, agent, t, pristine) for t in tasks))
    else:
        replays = [await replay(runtime, agent, t, pristine) for t in tasks]
    failed = [r.task.id for r in replays if not r.passed]
    if failed:
        sys.exit(f"tasks did not leave the expected database: {failed}")


async def direct(tasks: list[RetailTask], pristine: RetailDB) -> None:
    for task in tasks:
        expected_state(pristine, task).same_state(pristine)


def on_the_loop(tool: Tool) -> Tool:
    """The same tool as an ``async`` function, so that it runs on the event loop."""
    function = tool.function

    async def run(**kwargs: Any) -> Any:
        return function(**kwargs)

    return Tool(run, tool.spec, tool.context_param)


async def timed(work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process, every thread) of ``work``."""
    started, cpu = time.perf_counter(), time.process_time()
    await work()
    return time.perf_counter() - started, time.process_time() - cpu


async def measure(corpus: Path, count: int | None, repeats: int) -> None:
    pristine = RetailDB.load(corpus)
    tasks = load_tasks(corpus)[:count]
    agents = {
        "": build_agent(corpus),
        ", async tools": build_agent(corpus, tools=[on_the_loop(t) for t in RETAIL_TOOLS]),
    }
    calls = sum(len(t.actions) for t in tasks)
    print(
        f"# tau-bench retail, {len(tasks)} test tasks, {calls} tool calls, "
        f"{calls + len(tasks)} model turns ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()})"
    )
    with tempfile.TemporaryDirectory(prefix="keel-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        runtimes = {
            "memory": Runtime(store=MemoryStore()),
            "sqlite": Runtime(store=Path(tmp) / "taubench.db"),
        }
        for runtime in runtimes.values():
            for agent in agents.values():
                await suite(runtime, agent, tasks[:5], pristine, at_once=False)  # warm up
        seconds: dict[str, list[tuple[float, float]]] = {}
        for _ in range(repeats):
            seconds.setdefault("direct (no runtime)", []).append(
                await timed(partial(direct, tasks, pristine))
            )
            for kind, agent in agents.items():
                for at_once in (False, True):
                    for label, runtime in runtimes.items():
                        key = f"{label}, {'all at once' if at_once else 'one at a time'}{kind}"
                        run = partial(suite, runtime, agent, tasks, pristine, at_once=at_once)
                        seconds.setdefault(key, []).append(await timed(run))
        for runtime in runtimes.values():
            await runtime.close()
    n = len(tasks)
    rate = {key: n / statistics.median(w for w, _ in runs) for key, runs in seconds.items()}
    print(
        f"{'suite':45} tasks/s (median)     best   ms/task   CPU ms/task"
        f"   (median of {repeats} repeats)"
    )
    for key, runs in seconds.items():
        best = n / min(w for w, _ in runs)
        cpu = 1000 * statistics.median(c for _, c in runs) / n
        print(f"{key:45} {rate[key]:16,.1f} {best:8,.1f} {1000 / rate[key]:9.2f} {cpu:13.2f}")
    for kind in agents:
        for mode in ("one at a time", "all at once"):
            ratio = rate[f"memory, {mode}{kind}"] / rate[f"sqlite, {mode}{kind}"]
            print(f"ratio memory/sqlite, {mode}{kind}: {ratio:.2f}")
    for label in runtimes:
        gain = rate[f"{label}, one at a time, async tools"] / rate[f"{label}, one at a time"]
        print(f"ratio async/thread tools, {label}, one at a time: {gain:.2f}")
    floor = rate["direct (no runtime)"] / rate["memory, one at a time"]
    print(f"ratio direct/memory, one at a time: {floor:.1f}")
    # CPU time moves less than wall time when other work shares the machine.
    cpu_s = {key: statistics.median(c for _, c in runs) for key, runs in seconds.items()}
    for kind in agents:
        ratio = cpu_s[f"sqlite, one at a time{kind}"] / cpu_s[f"memory, one at a time{kind}"]
        print(f"CPU ratio sqlite/memory, one at a time{kind}: {ratio:.2f}")
    for label in runtimes:
        ratio = cpu_s[f"{label}, one at a time"] / cpu_s[f"{label}, one at a time, async tools"]
        print(f"CPU ratio thread/async tools, {label}, one at a time: {ratio:.2f}")
    await as_eval(corpus, count, repeats)


async def as_eval(corpus: Path, count: int | None, repeats: int) -> None:
    """The same tasks as a ``keel.evals`` dataset, scored on the final database and the tool
    calls by ``evaluate()`` (4 cases at a time): eval throughput in cases per second."""
    dataset = retail_dataset(corpus)
    dataset = evals.Dataset(cases=dataset.cases[:count])
    agent = build_agent(corpus)
    scorers: list[evals.Scorer] = [evals.State(state_matches), evals.ToolCalls("exact")]
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="keel-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        for repeat in range(repeats):
            for label in ("memory", "sqlite"):
                store = MemoryStore() if label == "memory" else Path(tmp) / f"eval-{repeat}.db"
                async with Runtime(store=store) as runtime:
                    started = time.perf_counter()
                    report = await evals.evaluate(
                        agent,
                        dataset,
                        scorers=scorers,
                        runtime=runtime,
                        deps=deps_for,
                        model=model_for,
                    )
                    elapsed = time.perf_counter() - started
                if report.pass_rate != 1.0:
                    sys.exit(f"the eval did not pass every case on {label}: {report.pass_rate}")
                rates.setdefault(label, []).append(len(dataset.cases) / elapsed)
    for label, found in rates.items():
        print(
            f"as an eval dataset, {label}: {statistics.median(found):,.1f} cases/s "
            f"(best {max(found):,.1f}), every case passed"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=corpus_root(),
        help="the corpora folder holding tau-bench/ (default: KEEL_CORPORA, else "
        "../shared/corpora beside the repository)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="10 tasks, once")
    options = parser.parse_args()
    try:
        retail_dir(options.corpus)
    except CorpusMissingError as exc:
        sys.exit(str(exc))
    count, repeats = (10, 1) if options.smoke else (None, options.repeats)
    asyncio.run(measure(options.corpus, count, repeats))


if __name__ == "__main__":
    main()

"""Evals: how many cases a second ``keel.evals.evaluate`` runs and scores, and what Keel's
pytest plugin costs a test.

    python bench/evals.py            # the figures in docs/benchmarks.md
    python bench/evals.py --smoke    # seconds; the test suite runs this

Throughput: a synthetic dataset of N cases, each a 2-step run (one call of an async tool,
then the answer) on a scripted model built from the case, scored by ``Exact`` and ``ToolCalls``, 4
runs at a time, on the in-memory store and on SQLite (a file, durable). The same runs made
with ``runtime.run`` in a plain loop of the same concurrency, without scoring or the report,
give the ratio: what evaluating adds to running.

Plugin: pytest is run in a subprocess on a file of T tests, with plugin auto-loading off,
(a) plain tests without the plugin, (b) the same tests with ``-p keel.pytest_plugin`` (its
import and its autouse guard on every test), (c) tests that each take the ``keel_runtime``
fixture and make one scripted run, against (d) tests that build the same runtime by hand. The
per-test overhead is the difference of the wall times divided by T; loading the plugin is
what (b) costs over (a) with T = 1 (it imports Keel, which a session testing code that uses
Keel pays anyway).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from keel import Agent, Runtime, tool
from keel.evals import Case, Dataset, Exact, ExpectedCall, ToolCalls, evaluate
from keel.stores import SQLiteStore
from keel.testing import MemoryStore, ScriptedModel, call

ROOT = Path(__file__).resolve().parents[1]


@tool(idempotent=True, side_effects="read")
async def lookup(order_id: str) -> str:
    """Find an order."""
    return f"order {order_id} shipped"


AGENT = Agent(name="bench", tools=[lookup])


def dataset(n: int) -> Dataset:
    return Dataset(
        [
            Case(
                id=f"c{i}",
                input=f"where is {i}?",
                reference=f"Order {i} shipped.",
                expected_tools=[ExpectedCall("lookup", {"order_id": str(i)})],
                metadata={"order": str(i)},
            )
            for i in range(n)
        ]
    )


def model_for(case: Case) -> ScriptedModel:
    order = case.metadata["order"]
    return ScriptedModel([call("lookup", order_id=order), f"Order {order} shipped."])


async def _plain(runtime: Runtime, cases: Dataset, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(case: Case) -> None:
        async with gate:
            await runtime.run(AGENT, case.input, model=model_for(case))

    await asyncio.gather(*(one(c) for c in cases))


def _store(kind: str, folder: Path, label: str) -> Any:
    if kind == "memory":
        return MemoryStore()
    return SQLiteStore(folder / f"{label}.db")


async def throughput(kind: str, n: int, repeats: int, folder: Path) -> tuple[float, float]:
    """Median cases per second of evaluate() and of plain runs, on ``kind``."""
    cases = dataset(n)
    evals, plains = [], []
    async with Runtime(store=MemoryStore()) as warm:  # imports and first-call costs, untimed
        await evaluate(AGENT, dataset(20), scorers=[Exact()], runtime=warm, model=model_for)
    for r in range(repeats):
        for mode in ("eval", "plain"):
            store = _store(kind, folder, f"{kind}-{mode}-{r}")
            async with Runtime(store=store) as runtime:
                began = time.perf_counter()
                if mode == "eval":
                    report = await evaluate(
                        AGENT,
                        cases,
                        scorers=[Exact(), ToolCalls()],
                        runtime=runtime,
                        model=model_for,
                        concurrency=4,
                    )
                    assert report.pass_rate == 1.0, report.cases[0].failures()
                    evals.append(n / (time.perf_counter() - began))
                else:
                    await _plain(runtime, cases, 4)
                    plains.append(n / (time.perf_counter() - began))
            if kind != "memory":
                await store.close()
    return statistics.median(evals), statistics.median(plains)


PLAIN = """
def test_{i}():
    assert {i} + 1 > {i}
"""

BY_HAND = """
from keel import Agent, KeelSettings, Runtime
from keel.testing import FakeClock, MemoryStore, ScriptedModel


def test_{i}():
    clock = FakeClock(tick=0.001)
    runtime = Runtime(store=MemoryStore(clock=clock, check_json=True), settings=KeelSettings(),
                      clock=clock, recover_on_start=False)
    result = runtime.run_sync(Agent(name="a", model=ScriptedModel(["hi"])), "hello")
    assert result.output == "hi"
"""

FIXTURE = """
from keel import Agent
from keel.testing import ScriptedModel


def test_{i}(keel_runtime, keel_expect):
    result = keel_runtime.run_sync(Agent(name="a", model=ScriptedModel(["hi"])), "hello")
    keel_expect(result).output("hi")
"""


def _pytest(folder: Path, source: str, count: int, plugin: bool) -> float:
    """Wall seconds of one pytest process on ``count`` tests made from ``source``."""
    header, _, body = source.rpartition("\ndef test_")
    body = "\ndef test_" + body
    text = header + "".join(body.format(i=i) for i in range(count))
    path = folder / f"test_bench_{abs(hash((source, count, plugin)))}.py"
    path.write_text(text)
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    if plugin:
        args[3:3] = ["-p", "keel.pytest_plugin"]
    began = time.perf_counter()
    done = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"pytest failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def plugin_overhead(tests: int, repeats: int, folder: Path) -> dict[str, float]:
    """Median wall seconds of each pytest variant."""
    variants = {
        "plain, no plugin (1 test)": (PLAIN, 1, False),
        "plain, plugin (1 test)": (PLAIN, 1, True),
        "plain, no plugin": (PLAIN, tests, False),
        "plain, plugin": (PLAIN, tests, True),
        "runtime by hand, plugin": (BY_HAND, tests, True),
        "keel_runtime fixture": (FIXTURE, tests, True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (source, count, plugin) in variants.items():
            times[name].append(_pytest(folder, source, count, plugin))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    options = parser.parse_args()
    cases, repeats, tests = (20, 1, 5) if options.smoke else (1000, 3, 300)
    print(f"# evals benchmark, {platform.python_version()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        print(f"\n## throughput: {cases} cases, 2 steps each, 4 at a time\n")
        print("| store | evaluate() cases/s | plain runs/s | ratio |")
        print("|---|---|---|---|")
        for kind in ("memory", "sqlite"):
            evals, plain = asyncio.run(throughput(kind, cases, repeats, folder))
            print(f"| {kind} | {evals:,.0f} | {plain:,.0f} | {evals / plain:.2f} |")
        print(f"\n## pytest plugin: {tests} tests per file, median of {repeats}\n")
        found = plugin_overhead(tests, repeats, folder)
        for label, seconds in found.items():
            print(f"- {label}: {seconds:.3f} s")
        load = found["plain, plugin (1 test)"] - found["plain, no plugin (1 test)"]
        guard = (found["plain, plugin"] - found["plain, no plugin"] - load) / tests * 1e3
        fixture = (found["keel_runtime fixture"] - found["runtime by hand, plugin"]) / tests * 1e3
        print(f"\nloading the plugin: {load * 1e3:.0f} ms per session")
        print(f"its guard on a plain test: {guard:+.3f} ms per test")
        print(
            f"keel_runtime + keel_expect against a runtime made by hand: {fixture:+.3f} ms per test"
        )


if __name__ == "__main__":
    main()

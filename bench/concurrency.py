"""Many runs at once in one process: 1,000 concurrent runs of 5 steps, each model call taking
50 ms, on each store. Reports the wall time, runs per second and the peak memory (RSS) of the
process, each store measured in a fresh process of its own.

    python bench/concurrency.py                       # memory and SQLite
    python bench/concurrency.py --postgres URL        # and PostgreSQL
    python bench/concurrency.py --smoke               # seconds; the test suite runs this

Each run asks the model 5 times: 4 turns with a tool call (an async tool that returns at once)
and a final answer. The model sleeps 50 ms per call, as a fast hosted model would, so a run
cannot take less than 250 ms; what the figures show is how many of them Keel keeps going at
once, and what it costs in CPU and memory to journal them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from keel import Agent, KeelSettings, Limits, Runtime, tool
from keel.messages import ModelRequest, ToolResultMessage
from keel.stores import open_store
from keel.testing import FunctionModel, call

STEPS = 5
SCHEMA = f"keel_bench_concurrency_{os.getppid()}"


@tool(idempotent=True, side_effects="none")
async def ping() -> str:
    """Answer at once."""
    return "pong"


def make_agent(latency_s: float) -> Agent[str]:
    turn = call("ping")

    async def answer(request: ModelRequest) -> Any:
        await asyncio.sleep(latency_s)
        done = sum(isinstance(m, ToolResultMessage) for m in request.messages)
        return turn if done < STEPS - 1 else "done"

    return Agent(
        name="bench",
        model=FunctionModel(answer),
        tools=[ping],
        limits=Limits(max_steps=STEPS + 1, max_repeated_calls=STEPS + 1),
    )


async def measure(location: str, runs: int, latency_s: float) -> dict[str, Any]:
    store = open_store(location, schema=SCHEMA, pool_size=20)
    runtime = Runtime(store=store, settings=KeelSettings.from_environ({}))
    agent = make_agent(latency_s)
    await runtime.run(agent, "warm up")
    started = time.perf_counter()
    results = await asyncio.gather(*(runtime.run(agent, f"job {i}") for i in range(runs)))
    wall = time.perf_counter() - started
    assert all(r.status == "completed" for r in results), {r.status for r in results}
    await runtime.close()
    await store.close()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_s": wall, "runs_per_s": runs / wall, "rss_mib": rss_mib}


def child(options: argparse.Namespace) -> None:
    found = asyncio.run(measure(options.child, options.runs, options.latency))
    print(json.dumps(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per model call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options)
        return
    if options.smoke:
        options.runs, options.repeats, options.latency = 20, 1, 0.001
    print(
        f"# {options.runs} concurrent runs of {STEPS} steps, model latency "
        f"{options.latency * 1000:.0f} ms  ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()})"
    )
    print(
        "store        wall s   runs/s   peak RSS MiB   (median of repeats, each in a fresh process)"
    )
    with tempfile.TemporaryDirectory(prefix="keel-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        locations: dict[str, Callable[[int], str]] = {
            "memory": lambda i: "memory",
            "sqlite": lambda i: f"{tmp}/c{i}.db",
        }
        if options.postgres:
            locations["postgres"] = lambda i: options.postgres
        for label, where in locations.items():
            found = []
            for i in range(options.repeats):
                if label == "postgres":
                    _reset_postgres(options.postgres)
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        where(i),
                        "--runs",
                        str(options.runs),
                        "--latency",
                        str(options.latency),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0:
                    raise SystemExit(done.stderr)
                found.append(json.loads(done.stdout.strip().splitlines()[-1]))
            if label == "postgres":
                _reset_postgres(options.postgres)
            found.sort(key=lambda f: f["wall_s"])
            median = found[len(found) // 2]
            print(
                f"{label:<10} {median['wall_s']:>8.2f} {median['runs_per_s']:>8.0f} "
                f"{median['rss_mib']:>14.0f}   (best {found[0]['runs_per_s']:.0f} runs/s)"
            )


def _reset_postgres(url: str) -> None:
    """Drop the benchmark's own schema, so every repeat starts from an empty journal."""
    import psycopg
    from psycopg import sql

    schema = f"keel_bench_concurrency_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()

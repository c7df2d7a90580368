"""Submit-to-claim latency with an idle worker: how long a submitted run waits in the queue
before a worker in another process starts it.

    python bench/claim_latency.py                         # SQLite
    python bench/claim_latency.py --postgres URL          # and PostgreSQL
    python bench/claim_latency.py --smoke                 # seconds; the test suite runs this

A ``keel worker`` process drives an agent that answers at once. This process submits runs one
at a time, each after the previous one completed (so the worker is idle when it arrives), and
reads from the journal when each was accepted (``RunStarted.at``) and when the worker began it
(``RunDequeued.at``): the difference is the latency. Both times come from this machine's clock.
The worker is woken by the store (SQLite: its data version, polled every few milliseconds;
PostgreSQL: ``LISTEN/NOTIFY``), not by a poll of the whole queue.
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

from keel import Agent, KeelSettings, Runtime
from keel.events import RunDequeued, RunStarted
from keel.stores import open_store
from keel.testing import FunctionModel

APP = """
from keel import Agent
from keel.testing import FunctionModel

agent = Agent(name="quick", model=FunctionModel(lambda request: "ok"))
"""


def _agent() -> Agent[str]:
    return Agent(name="quick", model=FunctionModel(lambda request: "ok"))


async def _measure(location: str, schema: str, count: int) -> list[float]:
    store = open_store(location, schema=schema)
    runtime = Runtime(store=store, settings=KeelSettings.from_environ({}))
    agent = _agent()
    latencies = []
    for i in range(count + 3):
        run_id = await runtime.submit(agent, f"job {i}")
        result = await runtime.wait(run_id, timeout_s=30)
        assert result.status == "completed", result.status
        events = await store.load(run_id)
        started = next(e for e in events if isinstance(e, RunStarted))
        dequeued = next(e for e in events if isinstance(e, RunDequeued))
        if i >= 3:  # the first few warm the worker up
            latencies.append((dequeued.at - started.at) * 1000)
        await asyncio.sleep(0.02)  # the worker is idle again when the next one arrives
    await runtime.close()
    await store.close()
    return latencies


def _run(label: str, location: str, schema: str, count: int, tmp: Path) -> None:
    app = tmp / "quick_app.py"
    app.write_text(APP)
    env = {
        **os.environ,
        "KEEL_DB": location,
        "KEEL_DB_SCHEMA": schema,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "keel", "worker", str(app), "--concurrency", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # let it start and open the store
        latencies = asyncio.run(_measure(location, schema, count))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    cut = statistics.quantiles(latencies, n=100)
    print(
        f"{label:<10} p50 {statistics.median(latencies):6.2f} ms   p90 {cut[89]:6.2f} ms   "
        f"p99 {cut[98]:6.2f} ms   ({len(latencies)} runs)"
    )


def _drop(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--smoke", action="store_true")
    options = parser.parse_args()
    count = 5 if options.smoke else options.runs
    print(
        f"# submit-to-claim latency, idle worker in another process  ({time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})"
    )
    with tempfile.TemporaryDirectory(prefix="keel-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        _run("sqlite", f"{tmp}/claims.db", "keel", count, Path(tmp))
        if options.postgres:
            schema = f"keel_bench_claims_{os.getpid()}"
            try:
                _run("postgres", options.postgres, schema, count, Path(tmp))
            finally:
                _drop(options.postgres, schema)


if __name__ == "__main__":
    main()

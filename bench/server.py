"""The server under load, from a separate process: `keel serve` in subprocesses, this script
as the client, on this machine's loopback.

    python bench/server.py                 # SQLite; the figures in docs/benchmarks.md
    python bench/server.py --postgres postgresql://postgres@127.0.0.1:5432/test
    python bench/server.py --smoke         # seconds; the test suite runs this

Measured (agents in bench/server_app.py, three steps each, offline models):

- create-and-wait: ``POST /v1/runs`` that waits for the answer, ``--concurrency`` clients at
  once, one ``keel serve`` driving its runs, on the in-memory store, SQLite (and PostgreSQL);
  runs per second, the p50/p99 latency, and the serving process's CPU time per run (every
  thread), which a busy machine disturbs much less than the wall clock.
- in flight: ``--inflight`` background runs of an agent whose model takes 200 ms a call, all
  driven by one ``keel worker``; the worker's peak resident memory over its idle memory, per
  run in flight at the peak.
- SSE: an agent whose tools take 20 ms, followed over ``/v1/runs/{id}/stream``; for each event,
  the time from its journaled moment (``at``) to its arrival here (same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "bench" / "server_app.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(db: str, schema: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "OTEL_"))}
    env["KEEL_DB"] = db
    if schema:
        env["KEEL_DB_SCHEMA"] = schema
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return env


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "keel", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise SystemExit(f"keel serve exited: {err}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit("keel serve did not become ready within 60 s")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- create and wait -----------------------------------------------------------------------------


async def _create_and_wait(base: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def one(number: int) -> None:
            async with gate:
                started = time.perf_counter()
                body = {"agent": "fast", "input": f"Where are orders {number}?", "wait": 30}
                response = await client.post("/v1/runs", json=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200 or response.json()["status"] != "completed":
                    raise SystemExit(f"a run did not complete: {response.text}")

        await asyncio.gather(*(one(n) for n in range(concurrency)))  # warm up
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(requests)))
        elapsed = time.perf_counter() - started
    return requests / elapsed, latencies


def create_and_wait(label: str, db: str, schema: str | None, options: argparse.Namespace) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["serve", APP, "--port", str(port), "--concurrency", str(options.concurrency * 2)]
    with _process(args, _env(db, schema)) as server:
        _wait_ready(base, server)
        cpu_before = _cpu_s(server.pid)
        rate, latencies = asyncio.run(_create_and_wait(base, options.requests, options.concurrency))
        # Warm-up runs included: what the serving process spent per run, every thread.
        cpu_ms = (_cpu_s(server.pid) - cpu_before) * 1000 / (options.requests + options.concurrency)
    p50, p99 = _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000
    print(
        f"create-and-wait {label:<9} {options.requests} runs, {options.concurrency} clients: "
        f"{rate:7.1f} runs/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
        f"server CPU {cpu_ms:.2f} ms per run"
    )


def _cpu_s(pid: int) -> float:
    """CPU seconds a process spent (user and system, every thread), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- runs in flight ------------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _running(db_path: Path) -> int:
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()
    return int(count)


async def _submit_all(base: str, count: int) -> list[str]:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        gate = asyncio.Semaphore(32)

        async def one(number: int) -> str:
            async with gate:
                body = {"agent": "slow", "input": f"order {number}", "background": True}
                response = await client.post("/v1/runs", json=body)
                if response.status_code != 202:
                    raise SystemExit(f"a run was not accepted: {response.text}")
                return str(response.json()["run_id"])

        return list(await asyncio.gather(*(one(n) for n in range(count))))


def in_flight(directory: Path, options: argparse.Namespace) -> None:
    db_path = directory / "inflight.db"
    env = _env(str(db_path), None)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    serve = ["serve", APP, "--port", str(port), "--no-inline-worker"]
    work = ["worker", APP, "--concurrency", str(options.inflight), "--poll-interval", "0.05"]
    with _process(serve, env) as server:
        _wait_ready(base, server)
        # An idle worker's memory: the same command, up and waiting on an empty queue.
        with _process(work, env) as worker:
            time.sleep(3)
            idle = _rss_kb(worker.pid)
        # Every run queued first, so that the worker takes them all at once.
        asyncio.run(_submit_all(base, options.inflight))
        with _process(work, env) as worker:
            peak_rss, peak_running = idle, 0
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                peak_rss = max(peak_rss, _rss_kb(worker.pid))
                running = _running(db_path)
                peak_running = max(peak_running, running)
                uri = f"{db_path.resolve().as_uri()}?mode=ro"
                with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
                    (left,) = conn.execute(
                        "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')"
                    ).fetchone()
                if left == 0:
                    break
                time.sleep(0.05)
    per_run = (peak_rss - idle) / max(peak_running, 1)
    print(
        f"in flight: {options.inflight} runs submitted, {peak_running} running at once at the "
        f"peak; worker RSS {idle / 1024:.0f} MB idle, {peak_rss / 1024:.0f} MB at the peak: "
        f"{per_run:.1f} KB per run in flight"
    )


# -- SSE -----------------------------------------------------------------------------------------


async def _sse_delays(base: str, runs: int) -> list[float]:
    delays: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for number in range(runs):
            body = {"agent": "paced", "input": f"order {number}", "background": True}
            run_id = (await client.post("/v1/runs", json=body)).json()["run_id"]
            async with client.stream("GET", f"/v1/runs/{run_id}/stream") as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    arrived = time.time()
                    data = json.loads(line.removeprefix("data:"))
                    at = data.get("event", {}).get("at") if isinstance(data, dict) else None
                    if isinstance(at, int | float) and data.get("type") != "run_started":
                        delays.append(arrived - at)
    return delays


def sse(db: str, options: argparse.Namespace) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with _process(["serve", APP, "--port", str(port)], _env(db, None)) as server:
        _wait_ready(base, server)
        delays = asyncio.run(_sse_delays(base, options.sse_runs))
    p50, p99 = _percentile(delays, 0.5) * 1000, _percentile(delays, 0.99) * 1000
    print(
        f"SSE: {len(delays)} events of {options.sse_runs} runs, journaled to received: "
        f"p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {max(delays) * 1000:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--inflight", type=int, default=2000)
    parser.add_argument("--sse-runs", type=int, default=50)
    parser.add_argument("--postgres", metavar="URL", help="also measure on PostgreSQL")
    parser.add_argument("--smoke", action="store_true", help="a few runs of each, quickly")
    options = parser.parse_args()
    if options.smoke:
        options.requests, options.concurrency, options.inflight, options.sse_runs = 20, 4, 20, 2
    print(
        f"# server  ({time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()})"
    )
    with tempfile.TemporaryDirectory(prefix="keel-bench-server-") as tmp:
        directory = Path(tmp)
        create_and_wait("memory", "memory", None, options)
        create_and_wait("sqlite", str(directory / "keel.db"), None, options)
        if options.postgres:
            schema = f"keel_bench_server_{os.getpid()}"
            try:
                create_and_wait("postgres", options.postgres, schema, options)
            finally:
                _drop_schema(options.postgres, schema)
        sse(str(directory / "sse.db"), options)
        in_flight(directory, options)


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()

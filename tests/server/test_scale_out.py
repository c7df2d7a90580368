"""Scale-out for real: two ``keel serve`` replicas and two ``keel worker`` processes on one
PostgreSQL and one Redis, all on loopback. 500 runs are submitted across both replicas, one
worker is SIGKILLed while they run, and every run completes with its tool's effect exactly
once: the other worker takes over the dead one's runs when their leases expire."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.server.process import ROOT, free_port, keel_env, wait_until_serving
from tests.server.scale_app import create_tables

APP = str(ROOT / "tests" / "server" / "scale_app.py")
RUNS = 500


def _start(log: Path, *args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """``python -m keel ARGS``, its output to ``log`` (a pipe nobody reads could fill up)."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "keel", *args],
            cwd=log.parent,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


async def _submit(bases: list[str], runs: int, kill: subprocess.Popen[str]) -> int:
    """Submit ``runs`` background runs, alternating replicas, and SIGKILL ``kill`` halfway
    (its runs are under way then: each takes a fifth of a second in its tool). The number
    accepted."""
    accepted = 0
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(number: int) -> None:
            nonlocal accepted
            body = {"agent": "shipper", "input": f"A{number:04d}", "background": True}
            async with gate:
                response = await client.post(f"{bases[number % 2]}/v1/runs", json=body)
            assert response.status_code == 202, response.text
            accepted += 1
            if accepted == runs // 2:
                kill.send_signal(signal.SIGKILL)

        await asyncio.gather(*(one(n) for n in range(runs)))
    return accepted


def _wait_for(log: Path, text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def _count(conn: psycopg.Connection[tuple[int]], query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _statuses(url: str, schema: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(f'SELECT status, count(*) FROM "{schema}".runs GROUP BY status')
        return {status: int(count) for status, count in rows}


@pytest.mark.timeout(300)
def test_runs_across_replicas_complete_once_each_when_a_worker_is_killed(
    tmp_path: Path, postgres_url: str, postgres_schema: str, redis_url: str
) -> None:
    effects = f"{postgres_schema}_effects"
    create_tables(postgres_url, effects)
    env = keel_env(
        KEEL_DB=postgres_url,
        KEEL_DB_SCHEMA=postgres_schema,
        KEEL_REDIS_URL=redis_url,
        SCALE_DB_URL=postgres_url,
        SCALE_SCHEMA=effects,
    )
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    processes: list[subprocess.Popen[str]] = []
    try:
        for port in ports:
            log = tmp_path / f"serve-{port}.log"
            serve = _start(log, "serve", APP, "--port", str(port), "--no-inline-worker", env=env)
            processes.append(serve)
        for process, base in zip(processes, bases, strict=True):
            wait_until_serving(process, base)
        workers = [
            _start(
                tmp_path / f"worker-{number}.log",
                "worker",
                APP,
                "--concurrency",
                "16",
                "--poll-interval",
                "0.2",
                "--lease-ttl",
                "2",
                env=env,
            )
            for number in range(2)
        ]
        processes += workers
        for number in range(2):  # both workers are up and claiming before the load
            _wait_for(tmp_path / f"worker-{number}.log", "driving runs of shipper")
        assert asyncio.run(_submit(bases, RUNS, kill=workers[0])) == RUNS
        assert workers[0].wait(timeout=30) == -signal.SIGKILL

        deadline = time.monotonic() + 240
        statuses = _statuses(postgres_url, postgres_schema)

        while statuses.get("completed", 0) < RUNS and time.monotonic() < deadline:
            time.sleep(0.5)
            statuses = _statuses(postgres_url, postgres_schema)
        assert statuses == {"completed": RUNS}, statuses

        with psycopg.connect(postgres_url, autocommit=True) as conn:
            shipped = conn.execute(
                f'SELECT order_id, count(*) FROM "{effects}".shipments GROUP BY order_id'
            ).fetchall()
            attempts = _count(conn, f'SELECT count(*) FROM "{effects}".attempts')
            taken_over = _count(
                conn,
                f'SELECT count(*) FROM "{postgres_schema}".events '
                "WHERE type = 'run_resumed' AND body LIKE '%\"taken_over\":true%'",
            )
        # Every order shipped, and none twice, whoever drove its run.
        assert len(shipped) == RUNS
        assert {count for _, count in shipped} == {1}
        assert attempts >= RUNS
        # The kill left runs under way that the other worker took over: the test exercised it.
        assert taken_over > 0, "no run was taken over from the killed worker"
        # A run is readable from either replica.
        run = httpx.get(f"{bases[1]}/v1/runs", params={"limit": 1}, timeout=10).json()
        assert run["runs"][0]["status"] == "completed"
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{effects}" CASCADE')

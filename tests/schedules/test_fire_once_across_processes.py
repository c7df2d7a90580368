"""Two real scheduler processes on one database, ticking through the same due times at the
same moment, fire each due time once: on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.schedules import Schedule, open_schedule_store, planned_run_id
from keel.stores import open_store
from tests.postgres import drop_schema, new_schema_name

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_scheduler_worker.py")
COUNT = 20
ADDED_AT = 1_700_000_000.0  # 22:13:20 UTC; an every-minute schedule is due from 22:14:00
FIRST_DUE = 1_700_000_040.0


def race(target: str, schema: str | None) -> list[list[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), target, schema or "-", str(FIRST_DUE), str(COUNT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.stdout is not None
        ready = worker.stdout.readline()
        assert ready == "ready\n", worker.stderr.read() if worker.stderr else ready
    for worker in workers:  # both go at once
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    fired = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        fired.append(json.loads(out.strip().splitlines()[-1]))
    return fired


async def prepare(target: str, schema: str | None) -> None:
    store = open_store(target, schema=schema or "keel")
    await store.list_runs()  # the store's tables exist before the schedulers start
    await store.close()
    schedules = open_schedule_store(target, schema=schema)
    await schedules.add(
        Schedule("minutely", "* * * * *", agent="reporter", input="tick"), now=ADDED_AT
    )
    await schedules.aclose()


async def runs_in(target: str, schema: str | None) -> list[str]:
    store = open_store(target, schema=schema or "keel")
    try:
        return sorted(r.run_id for r in await store.list_runs(limit=None))
    finally:
        await store.close()


def check(fired: list[list[str]], stored: list[str]) -> None:
    expected = sorted(planned_run_id("minutely", FIRST_DUE + n * 60) for n in range(COUNT))
    together = sorted(fired[0] + fired[1])
    assert together == expected  # every due time fired, none twice
    assert stored == expected


async def test_on_sqlite(tmp_path: Path) -> None:
    target = str(tmp_path / "keel.db")
    await prepare(target, None)
    fired = await asyncio.to_thread(race, target, None)
    check(fired, await runs_in(target, None))


@pytest.mark.usefixtures("postgres_url")
async def test_on_postgresql(postgres_url: str) -> None:
    schema = new_schema_name()
    try:
        await prepare(postgres_url, schema)
        fired = await asyncio.to_thread(race, postgres_url, schema)
        check(fired, await runs_in(postgres_url, schema))
    finally:
        await drop_schema(postgres_url, schema)

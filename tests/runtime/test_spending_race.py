"""The budget guarantee with real runs: two OS processes start 100 runs each at once, for one
tenant, against one budget, on SQLite and on PostgreSQL. Spend never passes the budget, every
run either completed or paused naming the budget, and every completed run's cost is in the
ledger (nothing lost, nothing counted twice)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from keel import KeelSettings, Runtime
from keel.budgets import Budget

WORKER = Path(__file__).with_name("spending_race_worker.py")
ROOT = Path(__file__).resolve().parents[2]
PER_PROCESS = 100
# Each run may cost up to about $1.3 and costs $0.50: about 60 of the 200 runs fit in $30.
LIMIT = 30.0


def race(db: str, schema: str) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), db, schema, str(PER_PROCESS), str(LIMIT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line == "ready\n", (line, worker.stderr.read() if worker.stderr else "")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        runs: list[dict[str, Any]] = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            runs.extend(json.loads(out))
        return runs
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()


async def check(db: str, schema: str) -> None:
    runs = race(db, schema)
    assert len({r["run_id"] for r in runs}) == 2 * PER_PROCESS
    completed = [r for r in runs if r["status"] == "completed"]
    refused = [r for r in runs if r["status"] == "paused"]
    assert len(completed) + len(refused) == len(runs)
    assert {r["code"] for r in refused} == {"budget.exhausted"}
    assert completed
    assert refused
    settings = KeelSettings.from_environ({"KEEL_DB_SCHEMA": schema} if schema != "-" else {})
    budgets = [Budget("tenant", LIMIT, window="total")]
    async with Runtime(store=db, settings=settings, budgets=budgets) as runtime:
        [tenant] = [
            s for s in await runtime.budget_statuses(keys={"tenant": "acme"}) if s.scope == "tenant"
        ]
        assert tenant.spent_usd + tenant.reserved_usd <= LIMIT
        assert tenant.spent_usd == pytest.approx(sum(r["cost"] for r in completed))
        assert tenant.reserved_usd == pytest.approx(0.0)
        assert await runtime.budget_reservations() == []
        for record in refused[:3]:
            stored = await runtime.get_run(record["run_id"])
            assert stored.status == "paused"


async def test_runs_racing_from_two_processes_never_overspend_a_sqlite_budget(
    tmp_path: Path,
) -> None:
    await check(str(tmp_path / "keel.db"), "-")


async def test_runs_racing_from_two_processes_never_overspend_a_postgres_budget(
    postgres_url: str, postgres_schema: str
) -> None:
    await check(postgres_url, postgres_schema)

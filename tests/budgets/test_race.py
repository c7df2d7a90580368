"""The guarantee under a race: two OS processes reserve 200 amounts at once against one
budget; the budget is never overspent, every request gets an answer, nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from keel.budgets import Budget, open_budget_ledger
from keel.budgets._model import to_nanos
from tests.postgres import drop_schema, new_schema_name

WORKER = Path(__file__).with_name("_race_worker.py")
ROOT = Path(__file__).resolve().parents[2]
PER_PROCESS = 100
# Each process asks for about $5 in all, both together for about $10: whichever goes first,
# both are granted some and some requests are refused.
LIMIT = 7.5


def race(target: str, schema: str) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), target, schema, str(n), str(PER_PROCESS), str(LIMIT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in (1, 2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line == "ready\n", (line, worker.stderr.read() if worker.stderr else "")
        for worker in workers:  # both are waiting: let them go together
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = []
        for worker in workers:
            out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()


async def check(target: str, schema: str) -> None:
    results = race(target, schema)
    granted: dict[str, float] = {}
    for result in results:
        assert len(result["granted"]) + result["refused"] == PER_PROCESS
        assert result["granted"], "each process was granted some"
        granted.update(result["granted"])
    assert results[0]["refused"] + results[1]["refused"] > 0
    ledger = open_budget_ledger(target, schema=None if schema == "-" else schema)
    try:
        budgets = [Budget("tenant", LIMIT, key="acme"), Budget("global", LIMIT * 10)]
        statuses = await ledger.statuses(budgets=budgets, now=time.time())
        held = {s.scope: to_nanos(s.spent_usd) + to_nanos(s.reserved_usd) for s in statuses}
        total = sum(to_nanos(usd) for usd in granted.values())
        assert held["tenant"] <= to_nanos(LIMIT)
        assert held["tenant"] == total
        assert held["global"] == total
        reservations = await ledger.reservations()
        assert {r.reservation_id for r in reservations} == set(granted)
    finally:
        await ledger.aclose()


async def test_two_processes_never_overspend_a_sqlite_budget(tmp_path: Path) -> None:
    await check(str(tmp_path / "keel.db"), "-")


async def test_two_processes_never_overspend_a_postgres_budget(postgres_url: str) -> None:
    schema = new_schema_name()
    try:
        await check(postgres_url, schema)
    finally:
        await drop_schema(postgres_url, schema)

"""Kill test: a worker process running many runs with side effects, approvals and a person's
decisions is killed with SIGKILL at random moments, at least 100 times, and replaced each time
by the next worker, which was already starting (so two sometimes overlap). At the end every
run has completed, and the ledger (a separate table the tools write to) shows every effect
that is not safe to repeat exactly once; never twice. People were asked: the journals hold
their decisions, including on charges whose effect a kill left in doubt.

The number of kills can be raised with ``KEEL_KILL_TEST_KILLS`` (default 100).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from keel import Runtime
from keel.events import ApprovalRequested, CallDecided, ToolCallFinished, ToolCallStarted
from keel.ports import Store
from tests.durability.kill_worker import Ledger, make_agent, open_journal

WORKER = Path(__file__).with_name("kill_worker.py")
ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("KEEL_KILL_TEST_KILLS", "100"))


@dataclass
class Outcome:
    kills: int
    lives: int


def _worker(journal: str, schema: str | None, ledger: Path, jobs: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        str(WORKER),
        "--journal",
        journal,
        "--ledger",
        str(ledger),
        "--jobs",
        str(jobs),
    ]
    if schema:
        command += ["--schema", schema]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_repeatedly(journal: str, schema: str | None, ledger: Path, jobs: int) -> Outcome:
    """Kill the worker at random moments; each time the next one is already starting (it
    imports while the current one works, as in a rolling restart), so a kill costs no start-up
    time, and the two sometimes overlap: leases keep them off each other's runs."""
    rng = random.Random(20261124)
    kills = lives = 0
    worker = _worker(journal, schema, ledger, jobs)
    lives += 1
    assert worker.stdout is not None
    worker.stdout.readline()  # imported (0.35 s on a quiet machine, seconds on a busy one)
    while kills < KILLS:
        following = _worker(journal, schema, ledger, jobs)
        lives += 1
        time.sleep(rng.uniform(0.05, 0.8))
        if worker.poll() is not None:
            _, err = worker.communicate()
            assert worker.returncode == 0, err.decode()
            following.kill()
            following.communicate()
            return Outcome(kills=kills, lives=lives)  # all work done: the job count is too small
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
        kills += 1
        worker = following
        assert worker.stdout is not None
        worker.stdout.readline()  # imported: the next kill lands in its work
    _, err = worker.communicate(timeout=300)  # the last one finishes the work
    assert worker.returncode == 0, err.decode()
    return Outcome(kills=kills, lives=lives)


async def _check(store: Store, ledger_path: Path, jobs: int) -> tuple[int, int]:
    """Check journals against the ledger. Returns how many decisions people made, and how
    many of them were on calls whose effect a kill left in doubt."""
    decided = in_doubt = 0
    ledger = Ledger(str(ledger_path))
    try:
        async with Runtime(store=store, agents=[make_agent(ledger)], recover_on_start=False):
            records = await store.list_runs(limit=None)
            assert len(records) == jobs
            assert sorted(r.thread_id for r in records) == [f"job-{i:04d}" for i in range(jobs)]
            assert {r.status for r in records} == {"completed"}, Counter(r.status for r in records)
            charged = _charges(ledger_path)
            journaled: Counter[str] = Counter()
            for record in records:
                events = await store.load(record.run_id)
                attempts = Counter(
                    (e.idempotency_key, e.attempt) for e in events if isinstance(e, ToolCallStarted)
                )
                assert set(attempts.values()) <= {1}, f"{record.run_id} started an attempt twice"
                for event in events:
                    if isinstance(event, ToolCallFinished) and event.call.name == "charge":
                        journaled[f"{record.run_id}:{event.step}:0"] += 1
                    if isinstance(event, CallDecided):
                        decided += 1
                    if isinstance(event, ApprovalRequested):
                        in_doubt += sum(p.kind == "interrupted" for p in event.calls)
            # Every charge the journals hold happened exactly once in the world; none twice.
            assert charged == journaled
            assert set(charged.values()) == {1}
            assert len(charged) == 2 * jobs
            reserved = _reservations(ledger_path)
            assert len(reserved) == jobs
    finally:
        ledger.close()
    return decided, in_doubt


def _charges(path: Path) -> Counter[str]:
    with sqlite3.connect(path) as conn:
        return Counter(
            key for (key,) in conn.execute("SELECT key FROM effects WHERE kind='charge'")
        )


def _reservations(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {key for (key,) in conn.execute("SELECT key FROM reservations")}


@pytest.mark.timeout(900)
def test_runs_survive_sigkill_on_sqlite(tmp_path: Path) -> None:
    journal = tmp_path / "keel.db"
    ledger = tmp_path / "ledger.db"
    jobs = max(40, 8 * KILLS)

    outcome = _kill_repeatedly(f"sqlite://{journal}", None, ledger, jobs)

    assert outcome.kills >= KILLS, f"the work finished after {outcome.kills} kills; add jobs"
    decided, in_doubt = asyncio.run(_check_sqlite(journal, ledger, jobs))
    # Every job's small charge was approved by a person, and kills left charges in doubt
    # that a person settled: both kinds of decision really happened.
    assert decided >= jobs + in_doubt
    assert in_doubt > 0, "no kill left a charge in doubt: the test exercised nothing"
    print(f"sqlite: {outcome.kills} kills, {decided} decisions, {in_doubt} charges in doubt")


async def _check_sqlite(journal: Path, ledger: Path, jobs: int) -> tuple[int, int]:
    store = open_journal(f"sqlite://{journal}", None)
    try:
        return await _check(store, ledger, jobs)
    finally:
        await store.close()


@pytest.mark.timeout(900)
def test_runs_survive_sigkill_on_postgres(
    tmp_path: Path, postgres_url: str, postgres_schema: str
) -> None:
    ledger = tmp_path / "ledger.db"
    jobs = max(40, 8 * KILLS)

    outcome = _kill_repeatedly(postgres_url, postgres_schema, ledger, jobs)

    assert outcome.kills >= KILLS, f"the work finished after {outcome.kills} kills; add jobs"
    decided, in_doubt = asyncio.run(_check_postgres(postgres_url, postgres_schema, ledger, jobs))
    assert decided >= jobs + in_doubt
    assert in_doubt > 0, "no kill left a charge in doubt: the test exercised nothing"
    print(f"postgres: {outcome.kills} kills, {decided} decisions, {in_doubt} charges in doubt")


async def _check_postgres(url: str, schema: str, ledger: Path, jobs: int) -> tuple[int, int]:
    store = open_journal(url, schema)
    try:
        return await _check(store, ledger, jobs)
    finally:
        await store.close()

"""Kill tests of delegation: parents whose tools start child runs (an agent as a tool, a
fan-out) are SIGKILLed at random moments on a SQLite file, and each time another process
(started while the killed one worked) takes over. In the end every parent completed, no
effect that is not safe to repeat happened twice, each delegated call has exactly the
children it should, and every run's cost and tokens are exactly its own model calls plus its
children's totals.

The number of kills can be raised with ``KEEL_DELEGATION_KILLS`` (default 10).
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
from pathlib import Path

from keel import Runtime
from keel.events import (
    ModelResponded,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
    ToolCallWaiting,
)
from keel.ports import RunRecord, Store
from tests.durability.delegation_worker import PRICES, make_agents, make_lead, open_journal

WORKER = Path(__file__).with_name("delegation_worker.py")
ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("KEEL_DELEGATION_KILLS", "10"))


def _worker(mode: str, journal: Path, ledger: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(WORKER), mode, "--journal", str(journal)]
    command += ["--ledger", str(ledger), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_repeatedly(journal: Path, ledger: Path, jobs: int) -> int:
    """Kill the worker at random moments; each time the next one is already starting (it
    imports while the current one works, as in a rolling restart), so kills cost little
    time and the two sometimes overlap: leases keep them off each other's runs."""
    rng = random.Random(20261130)
    kills = 0
    worker = _worker("kill", journal, ledger, "--jobs", str(jobs))
    assert worker.stdout is not None
    worker.stdout.readline()
    while kills < KILLS:
        following = _worker("kill", journal, ledger, "--jobs", str(jobs))
        time.sleep(rng.uniform(0.05, 0.6))
        if worker.poll() is not None:
            _, err = worker.communicate()
            assert worker.returncode == 0, err.decode()
            following.kill()
            following.communicate()
            break  # all work done before this kill: the job count is too small
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
        kills += 1
        worker = following
        assert worker.stdout is not None
        worker.stdout.readline()  # imported: the next kill lands in its work
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err.decode()
    return kills


async def _costs_add_up(store: Store, record: RunRecord, runtime: Runtime) -> None:
    """A run's cost and tokens are its model calls' plus its children's, exactly."""
    events = await store.load(record.run_id)
    children = await runtime.children(record.run_id)
    own = [e for e in events if isinstance(e, ModelResponded)]
    cost = sum(e.cost_usd or 0.0 for e in own) + sum(c.cost_usd or 0.0 for c in children)
    tokens = sum(e.usage.input_tokens for e in own) + sum(c.input_tokens for c in children)
    assert (record.cost_usd, record.input_tokens) == (cost, tokens), record.run_id
    rolled = {c.run_id: c for e in events if isinstance(e, ToolCallFinished) for c in e.children}
    assert set(rolled) == {c.run_id for c in children}
    for child in children:  # what the parent added is what the child had when it ended
        assert (rolled[child.run_id].cost_usd, rolled[child.run_id].status) == (
            child.cost_usd,
            "completed",
        )


def _ledger_counts(path: Path, query: str) -> Counter[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return Counter(tuple(row) for row in conn.execute(query))


async def _check_kill(journal: Path, ledger: Path, jobs: int) -> tuple[int, int]:
    store = open_journal(str(journal))
    waits = takeovers = 0
    try:
        async with Runtime(
            store=store, agents=[make_agents()], prices=PRICES, recover_on_start=False
        ) as runtime:
            records = await store.list_runs(limit=None)
            assert Counter(r.agent for r in records) == {
                "boss": jobs,
                "researcher": jobs,
                "helper": 2 * jobs,
            }
            assert {r.status for r in records} == {"completed"}
            charged = _ledger_counts(ledger, "SELECT key FROM effects WHERE kind='charge'")
            journaled: Counter[tuple[object, ...]] = Counter()
            for record in records:
                events = await store.load(record.run_id)
                attempts = Counter(
                    (e.idempotency_key, e.attempt) for e in events if isinstance(e, ToolCallStarted)
                )
                assert set(attempts.values()) <= {1}, f"{record.run_id} started an attempt twice"
                for event in events:
                    if isinstance(event, ToolCallFinished) and event.call.name == "charge":
                        journaled[(f"{record.run_id}:{event.step}:0",)] += 1
                    waits += isinstance(event, ToolCallWaiting)
                    takeovers += isinstance(event, RunResumed) and event.taken_over
                first = events[0]
                assert isinstance(first, RunStarted)
                if record.agent == "boss":
                    children = await runtime.children(record.run_id)
                    assert sorted(c.agent for c in children) == ["helper", "helper", "researcher"]
                    assert all(c.thread_id == c.run_id for c in children)
                else:  # every child names a boss as its parent
                    assert first.parent_run_id is not None
                    assert (await store.get_run(first.parent_run_id)).agent == "boss"
                await _costs_add_up(store, record, runtime)
            # Every charge the journals hold happened exactly once in the world; none twice.
            assert charged == journaled
            assert set(charged.values()) == {1}
            assert len(charged) == 2 * jobs
            reserved = _ledger_counts(ledger, "SELECT key FROM reservations")
            assert len(reserved) == 3 * jobs  # the researcher's and each helper's, once each
    finally:
        await store.close()
    return waits, takeovers


def test_delegated_runs_survive_sigkill_and_costs_roll_up_exactly(tmp_path: Path) -> None:
    journal = tmp_path / "keel.db"
    ledger = tmp_path / "ledger.db"
    jobs = 8 * KILLS  # enough work that every kill lands in it, on a quiet machine too

    kills = _kill_repeatedly(journal, ledger, jobs)

    assert kills >= KILLS, f"the work finished after {kills} kills; add jobs"
    waits, takeovers = asyncio.run(_check_kill(journal, ledger, jobs))
    # Every researcher's small charge waited for a person, which paused its boss; and kills
    # left runs that another process took over.
    assert waits >= jobs
    assert takeovers > 0, "no kill interrupted a run: the test exercised nothing"


def test_a_fan_out_killed_midway_reuses_the_finished_children(tmp_path: Path) -> None:
    journal = tmp_path / "keel.db"
    ledger = tmp_path / "ledger.db"

    first = _worker("fanout", journal, ledger)
    _, err = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL, err.decode()  # it killed itself at item-2
    second = _worker("fanout", journal, ledger)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()

    calls = _ledger_counts(ledger, "SELECT input, life FROM model_calls")
    # Items 0 and 1 finished before the kill: the next life did not run them again. Item 2
    # was under way (its model call was not journaled): it ran again; item 3 ran once.
    assert calls == {("item-0", 1): 1, ("item-1", 1): 1, ("item-2", 1): 1, ("item-2", 2): 1,
                     ("item-3", 2): 1}  # fmt: skip
    tallies = _ledger_counts(ledger, "SELECT job FROM effects WHERE kind='tally'")
    assert tallies == {(f"item-{i}",): 1 for i in range(4)}
    asyncio.run(_check_fan_out(journal))


async def _check_fan_out(journal: Path) -> None:
    store = open_journal(str(journal))
    try:
        async with Runtime(store=store, agents=[make_lead()], recover_on_start=False) as runtime:
            records = await store.list_runs(limit=None)
            [lead] = [r for r in records if r.agent == "lead"]
            children = await runtime.children(lead.run_id)
            assert [c.input for c in sorted(children, key=lambda c: c.input)] == [
                f"item-{i}" for i in range(4)
            ]
            assert len(records) == 5
            assert lead.status == "completed"
            assert lead.cost_usd == 2.0 + 4 * 2.0  # its two turns, and two turns per child
            for record in records:
                await _costs_add_up(store, record, runtime)
    finally:
        await store.close()

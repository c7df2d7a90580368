"""Real processes competing for one run: exactly one advances it, no event is lost or
duplicated, and a process that stalled past its lease is fenced out when it wakes up."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from keel import Limits, Runtime
from keel._core.events import RunResumed, ToolCallFinished, ToolCallStarted
from keel._core.fold import fold
from keel.stores._sqlite import SQLiteStore
from tests.durability import race_worker
from tests.durability.race_worker import make_agent

WORKER = Path(__file__).with_name("race_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def outcome(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


def traced(path: Path) -> list[tuple[int, str]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(pid), what) for pid, what in (line.split(" ", 1) for line in lines)]


async def paused_run(journal: Path, trace: Path) -> str:
    """A run paused after the first of its five steps (four tool calls, then the answer)."""
    race_worker.TRACE = trace
    store = SQLiteStore(journal)
    try:
        async with Runtime(store=store, recover_on_start=False) as runtime:
            result = await runtime.run(make_agent(), "race", limits=Limits(max_steps=1))
    finally:
        await store.close()
    assert result.status == "paused"
    return result.run_id


def test_two_processes_resuming_one_run_exactly_one_advances_it(tmp_path: Path) -> None:
    journal, trace, go = tmp_path / "keel.db", tmp_path / "trace.log", tmp_path / "go"
    run_id = asyncio.run(paused_run(journal, tmp_path / "setup.log"))
    trace.write_text("")

    racers = [
        spawn("--journal", str(journal), "--trace", str(trace), "--resume", run_id, "--go", str(go))
        for _ in range(2)
    ]
    time.sleep(0.6)  # both are up and waiting for the signal
    go.touch()
    results = [outcome(p) for p in racers]

    winners = [r for r in results if r.get("status") == "completed"]
    losers = [r for r in results if r.get("error") == "run_leased"]
    # Either the second one found the lease held, or it came after the end and found the run
    # completed (then it wrote nothing); in both cases exactly one process advanced the run.
    advanced = {pid for pid, what in traced(trace) if what.startswith("model")}
    assert len(advanced) == 1, results
    assert len(winners) + len(losers) == 2, results
    events = asyncio.run(_load(journal, run_id))
    assert sum(isinstance(e, RunResumed) for e in events) == 1
    keys = [e.idempotency_key for e in events if isinstance(e, ToolCallStarted)]
    assert keys == [f"{run_id}:{step}:0" for step in range(1, 5)]  # none lost, none twice
    assert fold(events).status == "completed"
    assert [w for _, w in traced(trace) if w.startswith("model")] == [
        f"model {n}" for n in range(2, 6)
    ]


def test_a_process_that_stalls_past_its_lease_is_fenced_out(tmp_path: Path) -> None:
    journal, trace = tmp_path / "keel.db", tmp_path / "trace.log"
    stalled = spawn(
        "--journal",
        str(journal),
        "--trace",
        str(trace),
        "--start",
        "--slow-step",
        "2",
        "--lease-ttl",
        "0.6",
    )
    while ("tool 2" not in [w for _, w in traced(trace)]) and stalled.poll() is None:
        time.sleep(0.01)
    stalled.send_signal(signal.SIGSTOP)  # frozen inside step 2's tool, holding the lease
    try:
        time.sleep(1.0)  # past the lease's expiry: the run looks abandoned
        rescuer = spawn(
            "--journal", str(journal), "--trace", str(trace), "--recover", "--lease-ttl", "0.6"
        )
        rescued = outcome(rescuer)
    finally:
        stalled.send_signal(signal.SIGCONT)
    woke = outcome(stalled)

    assert rescued["recovered"] == ["completed"]
    # The stalled process woke up, its appends were refused, and it reports the run as the
    # rescuer left it.
    assert woke["status"] == "completed"
    run_id = woke["run_id"]
    events = asyncio.run(_load(journal, run_id))
    step_two = [e for e in events if isinstance(e, ToolCallFinished) and e.step == 2]
    assert [e.result for e in step_two] == [f"step 2 done by {rescued['pid']}"]
    # Both processes ran the idempotent step (same key); only the rescuer's result counts.
    assert {pid for pid, what in traced(trace) if what == "tool 2"} == {
        stalled.pid,
        rescued["pid"],
    }
    assert fold(events).status == "completed"


async def _load(journal: Path, run_id: str) -> list[Any]:
    store = SQLiteStore(journal)
    try:
        return await store.load(run_id)
    finally:
        await store.close()

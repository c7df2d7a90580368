"""Appends from many coroutines and from two OS processes at once make one unbroken chain,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.audit import AuditHead
from keel.audit._records import chain
from keel.errors import StoreError

from .conftest import Backend, entry

ROOT = Path(__file__).resolve().parents[2]
PER_WORKER = 60


async def test_appends_from_many_coroutines_form_one_chain(backend: Backend) -> None:
    made = await asyncio.gather(*(backend.log.append(entry(n)) for n in range(40)))

    assert sorted(r.seq for r in made) == list(range(1, 41))
    assert (await backend.log.verify()).ok
    assert {r.subject for r in await backend.log.records(limit=100)} == {
        f"run_{n}" for n in range(40)
    }


def _start(backend: Backend, name: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    command = [
        sys.executable,
        "-m",
        "tests.audit.append_worker",
        backend.target,
        backend.schema or "",
        name,
        str(PER_WORKER),
    ]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


async def test_appends_from_two_processes_form_one_chain(backend: Backend) -> None:
    await backend.log.head()  # the tables exist before the workers start
    workers = [_start(backend, name) for name in ("a", "b")]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:  # both start appending at once
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    assert [w.returncode for w in workers] == [0, 0], outputs
    result = await backend.log.verify()
    assert (result.ok, result.checked) == (True, 2 * PER_WORKER), result.message
    records = await backend.log.records(limit=1000)
    for name in ("a", "b"):
        mine = [r.subject for r in records if r.subject.startswith(f"{name}-")]
        assert mine == [f"{name}-{n}" for n in range(PER_WORKER)]
    assert await backend.log.head() == (records[-1].seq, records[-1].hash)


async def test_a_batch_is_committed_whole_or_not_at_all(backend: Backend) -> None:
    await backend.log.append(entry(1))
    # A stray row at seq 3 makes the second insert of the next batch fail.
    backend.insert(chain(AuditHead(2, "f" * 64), [entry(99)], 1.0)[0])

    with pytest.raises(StoreError):
        await backend.log.append_many([entry(2), entry(3)])

    assert [r.seq for r in await backend.log.records()] == [1, 3]
    assert (await backend.log.head()).seq == 1

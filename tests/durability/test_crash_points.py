"""Deterministic crashes: the process dies at every durable append of a run (right after it is
durable, and right before it is made), at every point of the run's life, approvals,
confirmations, retries and write tools included. Each time the run is recovered by a new
process and taken to completion, and the world (a ledger the tools write to) shows every effect
exactly once: none lost, none twice.

Random kills (``test_kill.py``) find what is likely; this finds what is narrow, such as a crash
right after a person's decision, or while the attempt that decision allowed is under way.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.durability.crash_worker import CRASHED, dump, ledger_rows
from tests.postgres import drop_schema, new_schema_name

WORKER = Path(__file__).with_name("crash_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _life(
    journal: str, ledger: Path, crash_after: int | None, *, before: bool, schema: str = "keel"
) -> tuple[int, int]:
    """Run one life; return its exit code and how many durable appends it made."""
    command = [sys.executable, str(WORKER), "--journal", journal, "--ledger", str(ledger)]
    command += ["--schema", schema]
    if crash_after is not None:
        command += ["--crash-after", str(crash_after)]
        if before:
            command.append("--before")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    appends = [
        int(line.split("=")[1]) for line in done.stdout.split() if line.startswith("appends=")
    ]
    assert done.returncode in (0, 3, CRASHED), done.stderr
    return done.returncode, appends[0] if appends else 0


def _until_done(
    journal: str, ledger: Path, crash_at: int | None, *, before: bool, schema: str = "keel"
) -> int:
    """Lives until the run completes; one crash lands at the ``crash_at``-th durable append
    counted over all lives (right before it, with ``before``). Returns the appends made."""
    total = 0
    crashed = crash_at is None
    for _ in range(20):
        budget = None if crashed or crash_at is None else crash_at - total
        code, appends = _life(journal, ledger, budget, before=before, schema=schema)
        total += appends
        crashed = crashed or code == CRASHED
        if code == 0:
            return total
    raise AssertionError(f"the run did not complete in 20 lives; ledger {dump(ledger)}")


def _check_world(ledger: Path) -> None:
    effects = Counter(kind for kind, _ in ledger_rows(ledger))
    keys = Counter(ledger_rows(ledger))
    assert effects == {"refund": 1, "charge": 1, "reserve": 1}, dump(ledger)
    assert set(keys.values()) == {1}, dump(ledger)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("before", [False, True], ids=["after-append", "before-append"])
def test_a_crash_at_any_append_loses_nothing_and_repeats_no_effect(
    tmp_path: Path, before: bool
) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    total = _until_done(f"sqlite://{clean / 'keel.db'}", clean / "ledger.db", None, before=False)
    _check_world(clean / "ledger.db")
    assert total >= 8  # start, steps, the approval, the decision...

    for crash_at in range(1, total + 1):
        where = tmp_path / f"crash-{crash_at}"
        where.mkdir()
        _until_done(f"sqlite://{where / 'keel.db'}", where / "ledger.db", crash_at, before=before)
        _check_world(where / "ledger.db")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("before", [False, True], ids=["after-append", "before-append"])
def test_a_crash_at_any_append_on_postgres_loses_nothing_and_repeats_no_effect(
    tmp_path: Path, postgres_url: str, before: bool
) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    schema = new_schema_name()
    try:
        total = _until_done(postgres_url, clean / "ledger.db", None, before=False, schema=schema)
        _check_world(clean / "ledger.db")
    finally:
        asyncio.run(drop_schema(postgres_url, schema))
    for crash_at in range(1, total + 1):
        where = tmp_path / f"crash-{crash_at}"
        where.mkdir()
        schema = new_schema_name()
        try:
            _until_done(postgres_url, where / "ledger.db", crash_at, before=before, schema=schema)
        finally:
            asyncio.run(drop_schema(postgres_url, schema))
        _check_world(where / "ledger.db")

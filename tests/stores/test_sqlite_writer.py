"""SQLite's writer thread and group commit, its file permissions, and what other store
objects and processes on the same file see (watch wake-ups, claims)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from keel._core.events import ToolCallFinished
from keel.errors import JournalConflictError, LeaseLostError
from keel.ports import Lease
from keel.stores import SQLiteStore
from keel.stores._sql import sqlite_writer

from ._data import T0, record, started, tool_step


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        yield conn


def group_sizes(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every group whose statements the store runs in one transaction."""
    sizes: list[int] = []
    original = sqlite_writer.Writer._statements

    def statements(self: sqlite_writer.Writer, group: list[Any]) -> Any:
        sizes.append(len(group))
        return original(self, group)

    monkeypatch.setattr(sqlite_writer.Writer, "_statements", statements)
    return sizes


@contextmanager
def writer_held(store: SQLiteStore) -> Iterator[None]:
    """Keep the writer thread from committing until the block ends: the writes submitted
    after the first one that changed rows queue up, and run as one group once it committed."""
    writer = store._writer
    assert writer is not None
    go = threading.Event()
    original = writer._commit

    def commit(outcomes: list[Any]) -> Any:
        if threading.current_thread() is writer._thread:
            go.wait(10)
        return original(outcomes)

    writer._commit = commit  # type: ignore[method-assign]
    try:
        yield
    finally:
        go.set()


# --- the file -------------------------------------------------------------------------------


async def test_the_file_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        for name in ("keel.db", "keel.db-wal", "keel.db-shm"):
            mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))


# --- group commit ---------------------------------------------------------------------------


async def test_many_concurrent_appends_are_all_durable_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keel.db"
    runs, steps = 12, 8
    async with SQLiteStore(path) as store:
        sizes = group_sizes(store, monkeypatch)
        for n in range(runs):
            await store.append(f"r{n}", [started(f"r{n}")], expected_seq=0, record=record(f"r{n}"))

        async def writer(run_id: str) -> None:
            seq = 1
            with raw(path) as check:
                for step in range(steps):
                    seq = await store.append(
                        run_id, tool_step(step), expected_seq=seq, record=record(run_id)
                    )
                    # Answered only after the commit: another connection sees the events.
                    (stored,) = check.execute(
                        "SELECT last_seq FROM runs WHERE run_id = ?", (run_id,)
                    ).fetchone()
                    assert stored == seq

        await asyncio.gather(*(writer(f"r{n}") for n in range(runs)))
        assert max(sizes) > 1  # some appends shared a commit
        assert sum(sizes) == runs * (steps + 1)
    async with SQLiteStore(path) as reopened:
        for n in range(runs):
            events = await reopened.load(f"r{n}")
            assert events == [started(f"r{n}")] + [e for s in range(steps) for e in tool_step(s)]


async def test_a_refused_append_in_a_group_leaves_the_others_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        leases: dict[str, Lease] = {}
        for n in range(4):
            lease = await store.start_run(
                f"r{n}", [started(f"r{n}")], record=record(f"r{n}"), owner="w", ttl_s=60
            )
            assert lease is not None
            leases[f"r{n}"] = lease
        taken = await store.acquire_lease("r3", owner="other", ttl_s=60, force=True)
        sizes = group_sizes(store, monkeypatch)
        with writer_held(store):
            first = asyncio.ensure_future(
                store.append(
                    "r0", tool_step(1), expected_seq=1, record=record("r0"), lease=leases["r0"]
                )
            )
            await asyncio.sleep(0.05)  # its commit waits
            pending = [
                asyncio.ensure_future(
                    store.append(
                        f"r{n}",
                        tool_step(1),
                        expected_seq=7 if n == 2 else 1,  # r2: a stale position
                        record=record(f"r{n}"),
                        lease=leases[f"r{n}"],  # r3: a lost lease
                    )
                )
                for n in (1, 2, 3)
            ]
            await asyncio.sleep(0.05)
        outcomes = await asyncio.gather(*pending, first, return_exceptions=True)
        assert sizes == [1, 3]  # the three were one group
        assert outcomes[0] == 4
        assert isinstance(outcomes[1], JournalConflictError)
        assert isinstance(outcomes[2], LeaseLostError)
        assert outcomes[3] == 4
        assert await store.load("r1") == [started("r1"), *tool_step(1)]
        assert await store.load("r2") == [started("r2")]
        assert await store.load("r3") == [started("r3")]
        assert (await store.get_run("r3")).lease_owner == "other"
        assert await store.append(
            "r3", tool_step(1), expected_seq=1, record=record("r3"), lease=taken
        )


async def test_a_database_error_in_a_group_fails_only_its_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        for n in range(3):
            await store.append(f"r{n}", [started(f"r{n}")], expected_seq=0, record=record(f"r{n}"))
        with raw(path) as conn:
            conn.execute(
                "CREATE TRIGGER no_r1 BEFORE INSERT ON events WHEN NEW.run_id = 'r1' "
                "BEGIN SELECT RAISE(ABORT, 'r1 is frozen'); END"
            )
        sizes = group_sizes(store, monkeypatch)
        with writer_held(store):
            pending = [
                asyncio.ensure_future(
                    store.append(f"r{n}", tool_step(1), expected_seq=1, record=record(f"r{n}"))
                )
                for n in range(3)
            ]
            await asyncio.sleep(0.05)
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        # r0, then r1 and r2 together; r1 failed after it wrote, so r2 ran again on its own.
        assert sizes == [1, 2, 1]
        assert outcomes[0] == 4
        assert outcomes[2] == 4
        assert "r1 is frozen" in str(outcomes[1])
        assert len(await store.load("r0")) == len(await store.load("r2")) == 4
        assert await store.load("r1") == [started("r1")]


async def test_group_commit_can_be_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteStore(tmp_path / "keel.db", max_group=1) as store:
        sizes = group_sizes(store, monkeypatch)
        await asyncio.gather(
            *(
                store.append(f"r{n}", [started(f"r{n}")], expected_seq=0, record=record(f"r{n}"))
                for n in range(10)
            )
        )
        assert sizes == [1] * 10


async def test_a_store_serves_several_event_loops_at_once(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "keel.db") as store:

        def in_thread(n: int) -> int:
            async def work() -> int:
                seq = await store.append(
                    f"r{n}", [started(f"r{n}")], expected_seq=0, record=record(f"r{n}")
                )
                return len(await store.load(f"r{n}")) + seq

            return asyncio.run(work())

        results = await asyncio.gather(*(asyncio.to_thread(in_thread, n) for n in range(6)))
        assert results == [2] * 6


# --- other store objects and processes ------------------------------------------------------


async def test_a_watcher_sees_another_store_objects_commits(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as watcher, SQLiteStore(path) as writer:
        await watcher.list_runs()
        async with watcher.watch("run-1") as change:
            await writer.append("run-1", [started()], expected_seq=0, record=record())
            assert await change.wait(5)
        async with watcher.watch(None) as queue:
            await writer.start_run(
                "q", [started("q")], record=record("q", status="queued"), owner=None, ttl_s=60
            )
            assert await queue.wait(5)


WRITER_CHILD = """
import asyncio, sys
from keel._core.events import RunStarted
from keel.ports import RunRecord
from keel.stores import SQLiteStore

async def main():
    async with SQLiteStore(sys.argv[1]) as store:
        record = RunRecord(run_id="q", thread_id="t", agent="a", model="m", status="queued",
                           created_at=0.0, updated_at=0.0, holds_thread=True)
        started = RunStarted(run_id="q", thread_id="t", agent="a", model="m", input="x")
        await store.start_run("q", [started], record=record, owner=None, ttl_s=60)

asyncio.run(main())
"""


async def test_a_watcher_sees_another_process_submit(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        await store.list_runs()
        async with store.watch(None) as queue:
            child = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER_CHILD, path)
            assert await child.wait() == 0
            assert await queue.wait(5)
        assert [lease.run_id for lease in await store.claim_runs(owner="me", ttl_s=60, limit=5)]


CLAIM_CHILD = """
import asyncio, json, sys
from keel.stores import SQLiteStore

async def main():
    got = []
    async with SQLiteStore(sys.argv[1]) as store:
        await store.list_runs()
        print("ready", flush=True)
        sys.stdin.readline()
        misses = 0
        while misses < 20:
            leases = await store.claim_runs(owner=sys.argv[2], ttl_s=60, limit=2)
            got += [lease.run_id for lease in leases]
            misses = 0 if leases else misses + 1
            await asyncio.sleep(0 if leases else 0.01)
    print(json.dumps(got))

asyncio.run(main())
"""


async def test_claimers_in_several_processes_never_share_a_run(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    runs = 120
    async with SQLiteStore(path) as store:
        for n in range(runs):
            await store.start_run(
                f"r{n:03d}",
                [started(f"r{n:03d}", thread_id=f"t{n}")],
                record=record(f"r{n:03d}", thread_id=f"t{n}", status="queued", created_at=T0 + n),
                owner=None,
                ttl_s=60,
            )
    children = [
        subprocess.Popen(  # noqa: ASYNC220 - the children wait for "go" on stdin
            [sys.executable, "-c", CLAIM_CHILD, str(path), f"p{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    claimed: list[str] = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        claimed += json.loads(out)
    assert sorted(claimed) == [f"r{n:03d}" for n in range(runs)]


async def test_claimers_on_several_threads_never_share_a_run(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    runs = 90
    async with SQLiteStore(path) as store:
        for n in range(runs):
            await store.start_run(
                f"r{n:03d}",
                [started(f"r{n:03d}", thread_id=f"t{n}")],
                record=record(f"r{n:03d}", thread_id=f"t{n}", status="queued"),
                owner=None,
                ttl_s=60,
            )
    got: list[list[str]] = [[] for _ in range(3)]
    barrier = threading.Barrier(3)

    def claimer(index: int) -> None:
        async def work() -> None:
            async with SQLiteStore(path) as mine:
                await mine.list_runs()
                barrier.wait(timeout=10)
                while leases := await mine.claim_runs(owner=f"c{index}", ttl_s=60, limit=2):
                    got[index] += [lease.run_id for lease in leases]

        asyncio.run(work())

    await asyncio.gather(*(asyncio.to_thread(claimer, n) for n in range(3)))
    everything = [run_id for ids in got for run_id in ids]
    assert sorted(everything) == [f"r{n:03d}" for n in range(runs)]


async def test_events_survive_in_order_under_load(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        seq = 1
        for step in range(30):
            seq = await store.append("run-1", tool_step(step), expected_seq=seq, record=record())
    with raw(path) as conn:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM events ORDER BY seq")]
        assert seqs == list(range(1, 92))
    async with SQLiteStore(path) as again:
        finished = [e for e in await again.load("run-1") if isinstance(e, ToolCallFinished)]
        assert [e.step for e in finished] == list(range(30))

"""What only the SQLite store promises: a file that outlives the process, WAL, migrations,
clear errors for files it cannot use, and safety against other connections and processes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Literal

import pytest

from keel._core.codec import encode_event, encode_message, event_to_dict
from keel._core.events import Event, RunFinished, RunStarted, ToolCallFinished
from keel.errors import (
    ConfigurationError,
    JournalConflictError,
    LeaseLostError,
    RunLeasedError,
    RunNotFoundError,
    StoreError,
    ThreadBusyError,
)
from keel.ports import ThreadHistory
from keel.stores import SQLiteStore
from keel.stores._sql import sqlite_schema
from keel.stores._sql.history_sql import list_runs_template
from keel.stores._sql.sqlite import SQLITE
from keel.stores._sql.sqlite_schema import LATEST_VERSION, MIGRATIONS

from ._data import conversation, finishing_step, record, started, tool_step


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection beside the store's, to look at or tamper with the file."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        yield conn


def python(script: str, *args: str, stdin: str = "") -> str:
    """Run ``script`` in a new interpreter and return its output."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def write_run(path: Path, synchronous: Literal["full", "normal"] = "full") -> list[Event]:
    events = [started(), *tool_step(1), *finishing_step(2)]
    async with SQLiteStore(path, synchronous=synchronous) as store:
        await store.append("run-1", events[:4], expected_seq=0, record=record())
        await store.append(
            "run-1",
            events[4:],
            expected_seq=4,
            record=record(status="completed"),
            thread_messages=conversation(),
        )
    return events


# --- durability -----------------------------------------------------------------------------


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_the_journal_survives_reopening(
    tmp_path: Path, synchronous: Literal["full", "normal"]
) -> None:
    path = tmp_path / "keel.db"
    events = await write_run(path, synchronous=synchronous)
    async with SQLiteStore(path, synchronous=synchronous) as reopened:
        assert await reopened.load("run-1") == events
        assert await reopened.get_run("run-1") == record(status="completed", last_seq=6)
        assert (await reopened.thread_history("thread-1")).messages == conversation()
        assert await reopened.append("run-1", tool_step(3), expected_seq=6, record=record()) == 9


def test_another_process_reads_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    events = asyncio.run(write_run(path))
    script = """
import asyncio, json, sys
from keel._core.codec import encode_event, encode_message, event_to_dict
from keel.stores import SQLiteStore
from keel.stores import _sqlite as sqlite_module

async def main():
    async with SQLiteStore(sys.argv[1]) as store:
        events = await store.load("run-1")
        run = await store.get_run("run-1")
    print(json.dumps({"events": [event_to_dict(e) for e in events], "last_seq": run.last_seq}))

asyncio.run(main())
"""
    seen = json.loads(python(script, str(path)))
    assert seen == {"events": [event_to_dict(e) for e in events], "last_seq": 6}


# --- the file -------------------------------------------------------------------------------


async def test_the_file_is_opened_lazily_and_its_directories_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "keel.db"
    store = SQLiteStore(path)
    assert not path.parent.exists()
    assert store.path == str(path)
    assert repr(store) == f"SQLiteStore({str(path)!r}, synchronous='full')"
    try:
        assert await store.list_runs() == []
        assert path.is_file()
    finally:
        await store.close()


async def test_closing_an_unopened_store_touches_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db")
    await store.close()
    assert not (tmp_path / "keel.db").exists()


async def test_an_in_memory_database_works() -> None:
    async with SQLiteStore(":memory:") as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        assert await store.load("run-1") == [started()]


async def test_wal_foreign_keys_and_synchronous_are_set(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    levels: list[tuple[Literal["full", "normal"], int]] = [("full", 2), ("normal", 1)]
    for synchronous, level in levels:
        async with SQLiteStore(path, synchronous=synchronous, busy_timeout_s=2.5) as store:
            await store.list_runs()
            conn = store._writer_conn  # the settings live on the store's write connection
            assert conn is not None
            assert conn.execute("PRAGMA synchronous").fetchone() == (level,)
            assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
            # Writes never wait for the write lock on the caller's thread: the writer thread
            # does, for busy_timeout_s (see test_a_held_write_lock_...); reads wait in SQLite.
            assert conn.execute("PRAGMA busy_timeout").fetchone() == (0,)
            reader = store._reader
            assert reader is not None
            assert reader.execute("PRAGMA busy_timeout").fetchone() == (2500,)
    with raw(path) as conn:
        # WAL is a property of the file, so a fresh connection sees it too.
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_the_schema_and_its_version_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        await store.list_runs()
    with raw(path) as conn:
        versions = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert versions.fetchall() == [(m.version, m.name) for m in MIGRATIONS]
        objects = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))
    assert {"runs", "events", "thread_messages", "threads", "schema_migrations"} <= objects.keys()
    assert {"runs_by_created", "runs_by_thread", "runs_by_status"} <= objects.keys()
    assert "WHERE holds_thread" in objects["runs_holding_thread"]
    assert "WHERE status IN ('queued', 'running')" in objects["runs_claimable"]
    assert "runs_running_by_thread" not in objects
    assert "lease_token INTEGER NOT NULL DEFAULT 0" in objects["runs"]
    assert objects["events"].rstrip().endswith("WITHOUT ROWID")
    assert "PRIMARY KEY (run_id, seq)" in objects["events"]


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))
    assert len({m.name for m in MIGRATIONS}) == len(MIGRATIONS)


async def test_reopening_applies_no_migration_twice(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    for _ in range(3):
        async with SQLiteStore(path) as store:
            await store.list_runs()
    with raw(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone() == (
            len(MIGRATIONS),
        )


async def test_a_database_from_a_newer_keel_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        await store.list_runs()
    newer = LATEST_VERSION + 1
    with raw(path) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)",
            (newer,),
        )
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match=rf"newer Keel \(schema {newer}\b.*upgrade keel"):
        await store.list_runs()
    await store.close()


@pytest.mark.parametrize(
    "content",
    [b"name,value\nthis is,a csv file\n" * 50, b"SQLite format 3\x00" + b"\xff" * 200],
    ids=["text", "bad-header"],
)
async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="is not a Keel SQLite database") as caught:
        await store.append("run-1", [started()], expected_seq=0, record=record())
    assert str(path) in str(caught.value)
    assert "move that file away" in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert path.read_bytes() == content
    await store.close()


async def test_a_path_inside_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    store = SQLiteStore(tmp_path / "file" / "keel.db")
    with pytest.raises(StoreError, match="cannot create the directory"):
        await store.list_runs()
    await store.close()


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    with pytest.raises(StoreError, match=str(tmp_path)) as caught:
        await store.list_runs()
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    await store.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"synchronous": "off"}, "synchronous must be"),
        ({"busy_timeout_s": -1.0}, "busy_timeout_s must be"),
        ({"busy_timeout_s": float("nan")}, "busy_timeout_s must be"),
        ({"max_group": 0}, "max_group must be"),
        ({"poll_interval_s": 0.0}, "poll_interval_s must be"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SQLiteStore(":memory:", **options)  # type: ignore[arg-type]


# --- errors ---------------------------------------------------------------------------------


async def test_a_failure_mid_append_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        with raw(path) as conn:
            conn.execute(
                "CREATE TRIGGER no_threads BEFORE INSERT ON thread_messages "
                "BEGIN SELECT RAISE(ABORT, 'thread writes disabled'); END"
            )
        with pytest.raises(StoreError, match="append to run 'run-1' failed") as caught:
            await store.append(
                "run-1",
                finishing_step(1),
                expected_seq=1,
                record=record(status="completed"),
                thread_messages=conversation(),
            )
        assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
        assert await store.load("run-1") == [started()]
        assert await store.get_run("run-1") == record(last_seq=1)
        assert await store.thread_history("thread-1") == ThreadHistory(messages=[], last_seq=0)
        # The transaction was rolled back: the store keeps working.
        assert await store.append("run-1", tool_step(1), expected_seq=1, record=record()) == 4


async def test_an_event_with_no_json_form_writes_nothing(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "keel.db") as store:
        bad = RunFinished(status="completed", output=object())
        with pytest.raises(ValueError, match="serialize"):
            await store.append("run-1", [started(), bad], expected_seq=0, record=record())
        with pytest.raises(RunNotFoundError):
            await store.load("run-1")


async def test_a_held_write_lock_times_out_with_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path, busy_timeout_s=0.05) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        with raw(path) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match=r"busy_timeout_s=0\.05") as caught:
                await store.append("run-1", tool_step(1), expected_seq=1, record=record())
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            # Readers are not blocked by a writer in WAL mode.
            assert await store.load("run-1") == [started()]
            other.execute("ROLLBACK")
        assert await store.append("run-1", tool_step(1), expected_seq=1, record=record()) == 4


async def test_a_write_waiting_for_the_write_lock_leaves_the_event_loop_free(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path, busy_timeout_s=10) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        with raw(path) as other:
            other.execute("BEGIN IMMEDIATE")
            write = asyncio.ensure_future(
                store.append("run-1", tool_step(1), expected_seq=1, record=record())
            )
            loop = asyncio.get_running_loop()
            began = loop.time()
            for _ in range(5):
                await asyncio.sleep(0.02)  # the loop goes on while the write waits
            assert loop.time() - began < 2
            assert not write.done()
            other.execute("ROLLBACK")
        assert await write == 4
        assert len(await store.load("run-1")) == 4


async def test_a_corrupted_event_is_reported_not_returned(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        await store.append(
            "run-1",
            [started(), *tool_step(1)],
            expected_seq=0,
            record=record(),
            thread_messages=conversation(),
        )
        with raw(path) as conn:
            conn.execute('UPDATE events SET body = \'{"type": "nope"}\' WHERE seq = 3')
            conn.execute("UPDATE thread_messages SET body = '[]' WHERE seq = 2")
        with pytest.raises(StoreError, match=r"event 3 of run 'run-1' .* not a valid Keel event"):
            await store.load("run-1")
        with pytest.raises(StoreError, match=r"message 2 of thread 'thread-1' .* not a valid"):
            await store.thread_history("thread-1")


async def test_a_closed_store_is_not_reopened(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db")
    await store.list_runs()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_run("run-1")


# --- several connections and processes ------------------------------------------------------


async def test_two_stores_on_one_file_see_each_others_appends(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as first, SQLiteStore(path) as second:
        await first.append("run-1", [started()], expected_seq=0, record=record())
        assert await second.load("run-1") == [started()]
        await second.append("run-1", tool_step(1), expected_seq=1, record=record())
        with pytest.raises(JournalConflictError) as caught:
            await first.append("run-1", tool_step(1), expected_seq=1, record=record())
        assert caught.value.actual == 4
        assert await first.load("run-1") == [started(), *tool_step(1)]


async def test_two_stores_racing_from_threads_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    rounds = 20
    barrier = threading.Barrier(2)
    async with SQLiteStore(path) as first, SQLiteStore(path) as second:
        await first.append("run-1", [started()], expected_seq=0, record=record())
        results: list[list[bool]] = [[], []]

        def writer(index: int, store: SQLiteStore) -> None:
            async def run() -> None:
                for step in range(rounds):
                    barrier.wait(timeout=10)
                    try:
                        await store.append(
                            "run-1",
                            tool_step(step, call_id=f"{index}-{step}"),
                            expected_seq=1 + 3 * step,
                            record=record(),
                        )
                        results[index].append(True)
                    except JournalConflictError:
                        results[index].append(False)

            asyncio.run(run())

        await asyncio.gather(
            asyncio.to_thread(writer, 0, first), asyncio.to_thread(writer, 1, second)
        )
        assert [a + b for a, b in zip(*results, strict=True)] == [1] * rounds
        events = await first.load("run-1")
        expected: list[Event] = [started()]
        for step in range(rounds):
            expected += tool_step(step, call_id=f"{0 if results[0][step] else 1}-{step}")
        assert events == expected


# The child opens the store, says it is ready, waits for "go", then does what argv says.
CHILD = """
import asyncio, json, sys
from keel._core.events import RunStarted, ToolCallFinished
from keel._core.messages import ToolCall
from keel.errors import JournalConflictError
from keel.ports import RunRecord
from keel.stores import SQLiteStore
from keel.stores import _sqlite as sqlite_module

path, mode, label, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
RECORD = RunRecord(
    run_id="run-1", thread_id="t", agent="a", model="m", status="running",
    created_at=0.0, updated_at=0.0,
)

def event(i):
    return ToolCallFinished(step=i, call=ToolCall(id=f"{label}-{i}", name="echo"), result=label)

async def main():
    async with SQLiteStore(path) as store:
        await store.list_runs()
        print("ready", flush=True)
        sys.stdin.readline()
        if mode == "start":
            try:
                seq = await store.append(
                    "run-1", [RunStarted(run_id="run-1", thread_id="t", agent="a", model="m",
                    input=label)], expected_seq=0, record=RECORD)
                print(json.dumps({"won": True, "seq": seq}))
            except JournalConflictError as exc:
                print(json.dumps({"won": False, "actual": exc.actual}))
            return
        seq, conflicts, i = 0, 0, 0
        while i < count:
            try:
                seq = await store.append("run-1", [event(i)], expected_seq=seq, record=RECORD)
                i += 1
            except JournalConflictError as exc:
                conflicts += 1
                seq = exc.actual
        print(json.dumps({"conflicts": conflicts}))

asyncio.run(main())
"""


def start_child(path: Path, mode: str, label: str, count: int = 0) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode, label, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def finish_child(child: subprocess.Popen[str]) -> dict[str, int]:
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    result: dict[str, int] = json.loads(out)
    return result


async def test_a_second_process_starting_the_same_run_conflicts(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        await store.list_runs()
        child = start_child(path, "start", "child")
        try:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
            try:
                await store.append(
                    "run-1", [started()], expected_seq=0, record=record("run-1", thread_id="t")
                )
                parent_won = True
            except JournalConflictError:
                parent_won = False
        finally:
            outcome = finish_child(child)
        assert parent_won != bool(outcome["won"])
        (first,) = await store.load("run-1")
        assert isinstance(first, RunStarted)
        assert first.input == (started().input if parent_won else "child")


async def test_two_processes_appending_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    count = 100
    children = [start_child(path, "loop", f"p{n}", count) for n in range(2)]
    try:
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
    finally:
        for child in children:
            finish_child(child)
    async with SQLiteStore(path) as store:
        events = await store.load("run-1")
        assert (await store.get_run("run-1")).last_seq == 2 * count
    assert all(isinstance(event, ToolCallFinished) for event in events)
    ids = [event.call.id for event in events if isinstance(event, ToolCallFinished)]
    assert sorted(ids) == sorted(f"p{n}-{i}" for n in range(2) for i in range(count))
    for n in range(2):
        mine = [i for i in ids if i.startswith(f"p{n}-")]
        assert mine == [f"p{n}-{i}" for i in range(count)]


async def test_a_damaged_database_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        await store.list_runs()
    data = bytearray(path.read_bytes())
    # Keep the header, trash the pages after it: SQLite recognises the file but not its tables.
    data[100:] = b"\x07" * (len(data) - 100)
    path.write_bytes(bytes(data))
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="damaged") as caught:
        await store.list_runs()
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    await store.close()


def query_plan(conn: sqlite3.Connection, statement: str, params: dict[str, object]) -> str:
    rows = conn.execute("EXPLAIN QUERY PLAN " + statement, {"now": 0.0, **params})
    return " ".join(row[3] for row in rows)


async def test_listing_reads_an_index_in_order_instead_of_sorting() -> None:
    async with SQLiteStore(":memory:") as store:
        await store.list_runs()
        conn = store._reader
        assert conn is not None
        params = {"thread": "t", "status": "running", "statuses": '["a", "b"]', "limit": 5}
        for key in ((), ("thread",), ("status_one",), ("thread", "status_one"), ("status_many",)):
            plan = query_plan(conn, SQLITE.render(list_runs_template(key)), params)
            assert "USING INDEX runs_" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


# --- migrations from older schemas, and explicit upgrades -----------------------------------


def make_version_1_database(path: Path) -> list[Event]:
    """A database as Keel's first schema left it, with one finished run and its messages,
    written by plain SQL the way that schema's store wrote it."""
    events = [started(), *tool_step(1), *finishing_step(2)]
    run = record(status="completed")
    with raw(path) as conn:
        conn.execute("BEGIN")
        conn.execute(sqlite_schema.CREATE_MIGRATIONS_TABLE)
        for statement in MIGRATIONS[0].statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (1, 'journal', 0)")
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, NULL, NULL, NULL, "
            "NULL, 6)",
            (
                run.run_id,
                run.thread_id,
                run.agent,
                run.model,
                run.status,
                run.created_at,
                run.updated_at,
                run.input,
            ),
        )
        # A run paused by that version: it holds its thread once migrated.
        conn.execute(
            "INSERT INTO runs VALUES ('paused', 'thread-1', 'a', 'm', 'paused', ?, ?, '', 0, 0, "
            "0, 0, NULL, NULL, NULL, NULL, 1)",
            (run.created_at + 1, run.created_at + 1),
        )
        conn.execute(
            "INSERT INTO events VALUES ('paused', 1, ?, 0, ?)",
            (started("paused").type, encode_event(started("paused")).decode()),
        )
        for seq, event in enumerate(events, 1):
            body = encode_event(event).decode()
            conn.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                ("run-1", seq, event.type, event.at, body),
            )
        for seq, message in enumerate(conversation(), 1):
            conn.execute(
                "INSERT INTO thread_messages VALUES (?, ?, ?, ?)",
                ("thread-1", seq, "run-1", encode_message(message).decode()),
            )
        conn.execute("COMMIT")
    return events


async def test_a_version_1_database_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    events = make_version_1_database(path)
    async with SQLiteStore(path) as store:
        assert await store.load("run-1") == events
        assert await store.get_run("run-1") == record(status="completed", last_seq=6)
        # The counter starts from the messages already there.
        assert await store.thread_history("thread-1") == ThreadHistory(
            messages=conversation(), last_seq=4
        )
        # The paused run holds its thread: an exclusive start waits until it gives it up.
        paused = await store.get_run("paused")
        assert paused.holds_thread
        assert await store.active_run("thread-1") == paused
        assert not (await store.get_run("run-1")).holds_thread
        with pytest.raises(ThreadBusyError):
            await store.start_run(
                "run-2",
                [started("run-2")],
                record=record("run-2"),
                owner="w",
                ttl_s=60,
                exclusive=True,
            )
        ended = dataclasses.replace(paused, status="cancelled", holds_thread=False)
        await store.append("paused", tool_step(1), expected_seq=1, record=ended)
        # The new abilities work on old and new runs alike.
        old_lease = await store.acquire_lease("run-1", owner="w", ttl_s=60)
        assert old_lease.token == 1
        lease = await store.start_run(
            "run-2", [started("run-2")], record=record("run-2"), owner="w", ttl_s=60, exclusive=True
        )
        assert lease is not None
        await store.append(
            "run-2",
            finishing_step(1),
            expected_seq=1,
            record=record("run-2", status="completed"),
            thread_messages=conversation("again"),
            lease=lease,
        )
        history = await store.thread_history("thread-1")
        assert history == ThreadHistory(messages=conversation() + conversation("again"), last_seq=8)
        await store.release_lease(old_lease)
        assert await store.delete_runs(["run-1"]) == 1
        assert (await store.thread_history("thread-1", upto_seq=4)).messages == []
    with raw(path) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert versions.fetchall() == [(1,), (2,), (3,), (4,), (5,)]


async def test_without_auto_migrate_an_old_database_is_refused_until_upgraded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keel.db"
    events = make_version_1_database(path)
    store = SQLiteStore(path, auto_migrate=False)
    try:
        with pytest.raises(StoreError, match=r"schema 1 and this Keel needs schema 5.*keel db"):
            await store.load("run-1")
        with raw(path) as conn:  # refused, and left alone
            assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone() == (1,)
        assert await store.upgrade() == [2, 3, 4, 5]
        assert await store.load("run-1") == events
        assert await store.upgrade() == []
    finally:
        await store.close()
    async with SQLiteStore(path, auto_migrate=False) as current:
        assert await current.load("run-1") == events


async def test_without_auto_migrate_a_new_file_needs_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path, auto_migrate=False) as store:
        with pytest.raises(StoreError, match=r"schema 0 .*run `keel db upgrade`"):
            await store.list_runs()
        assert await store.upgrade() == [1, 2, 3, 4, 5]
        assert await store.list_runs() == []
    async with SQLiteStore(path) as again:
        assert await again.upgrade() == []


async def test_without_auto_migrate_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        await store.list_runs()
    with raw(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (?, 'future', 0)", (LATEST_VERSION + 1,))
    async with SQLiteStore(path, auto_migrate=False) as store:
        with pytest.raises(StoreError, match="newer Keel"):
            await store.list_runs()
        with pytest.raises(StoreError, match="newer Keel"):
            await store.upgrade()


# --- leases ---------------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now_s = now

    def now(self) -> float:
        return self.now_s

    def monotonic(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.now_s += seconds


async def test_lease_times_follow_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock(1_000.0)
    async with SQLiteStore(tmp_path / "keel.db", clock=clock) as store:
        lease = await store.start_run("run-1", [started()], record=record(), owner="a", ttl_s=30)
        assert lease is not None
        assert lease.expires_at == 1_030.0
        clock.now_s = 1_029.9
        with pytest.raises(RunLeasedError):
            await store.append("run-1", tool_step(1), expected_seq=1, record=record())
        clock.now_s = 1_030.0  # expiry is inclusive: at expires_at the lease is over
        assert lease is not None
        (claimed,) = await store.claim_runs(owner="b", ttl_s=10, limit=5)
        assert (claimed.run_id, claimed.token, claimed.expires_at) == ("run-1", 2, 1_040.0)
        await store.release_lease(claimed)
        assert await store.append("run-1", tool_step(1), expected_seq=1, record=record()) == 4
        with pytest.raises(LeaseLostError):
            await store.renew_lease(lease, ttl_s=5)


LEASE_CHILD = """
import asyncio, json, sys
from keel.errors import RunLeasedError
from keel.stores import SQLiteStore

async def main():
    async with SQLiteStore(sys.argv[1]) as store:
        try:
            lease = await store.acquire_lease("run-1", owner="child", ttl_s=60)
            print(json.dumps({"token": lease.token}))
        except RunLeasedError as exc:
            print(json.dumps({"refused_by": exc.owner}))

asyncio.run(main())
"""


async def test_a_lease_holds_against_another_process(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as store:
        lease = await store.start_run("run-1", [started()], record=record(), owner="me", ttl_s=60)
        assert json.loads(python(LEASE_CHILD, str(path))) == {"refused_by": "me"}
        assert lease is not None
        await store.release_lease(lease)
        assert json.loads(python(LEASE_CHILD, str(path))) == {"token": 2}


async def test_queue_and_thread_queries_read_few_index_entries() -> None:
    async with SQLiteStore(":memory:") as store:
        await store.list_runs()
        conn = store._reader
        assert conn is not None
        params = {"thread_id": "t", "run_id": "r", "owner": "w", "ttl": 1.0, "limit": 5}
        for statement in (SQLITE.active_run, SQLITE.other_holder):
            plan = query_plan(conn, statement, params)
            assert "USING INDEX runs_holding_thread" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
        for (_, run_ids), statement in SQLITE.claim.items():
            plan = query_plan(conn, statement, {**params, "agents": "[]", "run_ids": "[]"})
            # Oldest first from the partial index of queued and running runs; the thread check
            # from the partial index of the runs that hold a thread.
            if not run_ids:
                assert "USING INDEX runs_claimable" in plan, plan
            assert "runs_holding_thread" in plan, plan
            assert "SCAN runs" not in plan.replace("SCAN runs USING", ""), plan

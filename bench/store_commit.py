"""What a durable write costs on SQLite, what group commit buys, and how fast an idle worker
sees a submitted run.

    python bench/store_commit.py                      # SQLite
    python bench/store_commit.py --postgres URL       # also PostgreSQL's submit-to-claim
    python bench/store_commit.py --smoke              # seconds, to check that it runs

**One append vs one bare commit.** On a warm file (``synchronous=FULL``, WAL), the median time
of ``SQLiteStore.append`` of a 3-event tool step (encoding, the writer thread's hand-offs and
the statements included), against the median of a bare commit of the same size on a plain
sqlite3 connection: ``BEGIN IMMEDIATE``, the run's summary row updated and the three encoded
events inserted into the same schema, ``COMMIT``. Also shown: the floor, a commit of the three
bodies alone into a one-table file. They are interleaved, each first in turn after the same
short pause, so that disk noise and warm caches favour none.
Target: at most 1.5 times the bare commit of the same rows.

**Concurrent appends.** ``--tasks`` tasks, each appending ``--steps`` 3-event steps to its
own run as fast as it can, on one store: appends per second with group commit (the default)
and without (``max_group=1``: one commit per append).

**Submit to claim.** An idle worker, on its own store object (SQLite: another connection, so
it sees the commit through ``PRAGMA data_version``; PostgreSQL: through ``NOTIFY``) and its
own thread and event loop, waits on ``watch(None)`` and claims as soon as it wakes; the
submitter starts a queued run. The time from the start of the submit to the claim's return.
Targets: p50 at most 5 ms on SQLite, 10 ms on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from keel._core.codec import encode_event
from keel._core.events import Event, ModelResponded, ToolCallFinished, ToolCallStarted
from keel._core.messages import AssistantMessage, ToolCall
from keel._core.usage import Usage
from keel.ports import RunRecord, Store
from keel.stores import SQLiteStore
from keel.stores._sql.store import SQLStore


def step(n: int, run_id: str = "run") -> list[Event]:
    call = ToolCall(id=f"call_{n}", name="get_weather", arguments='{"city": "Paris"}')
    return [
        ModelResponded(
            step=n,
            model="openai:gpt-4o-mini",
            message=AssistantMessage(content="Let me check. " * 10, tool_calls=(call,)),
            usage=Usage(requests=1, input_tokens=812, output_tokens=41),
            cost_usd=0.000146,
            finish_reason="tool_calls",
        ),
        ToolCallStarted(step=n, call=call, idempotency_key=f"{run_id}:{n}:{call.id}"),
        ToolCallFinished(step=n, call=call, result='{"temp_c": 18, "sky": "cloudy"}' * 4),
    ]


# When each run was created: a run's creation time never changes, so appends rewrite no index.
_CREATED: dict[str, float] = {}


def record(run_id: str, *, status: str = "running", thread_id: str = "t") -> RunRecord:
    created_at = _CREATED.setdefault(run_id, time.time())
    return RunRecord(
        run_id=run_id,
        thread_id=thread_id,
        agent="bench",
        model="m",
        status=status,  # type: ignore[arg-type]
        created_at=created_at,
        updated_at=time.time(),
        holds_thread=True,
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


async def one_append_vs_bare_commit(directory: Path, rounds: int) -> None:
    # The bare commits write into a database made by the store (same schema, same indexes),
    # on a plain sqlite3 connection, with no Keel code in between.
    bare_path = directory / "bare.db"
    async with SQLiteStore(bare_path) as schema_only:
        await schema_only.append("run", step(0), expected_seq=0, record=record("run"))
    bare = sqlite3.connect(bare_path, isolation_level=None)
    bare.execute("PRAGMA journal_mode = WAL")
    bare.execute("PRAGMA synchronous = FULL")
    bare.execute(
        "CREATE TABLE bare (run_id TEXT, seq INTEGER, body TEXT, PRIMARY KEY (run_id, seq))"
    )
    append_s: list[float] = []
    same_s: list[float] = []
    rows_s: list[float] = []
    async with SQLiteStore(directory / "keel.db") as store:
        seq = await store.append("run", step(0), expected_seq=0, record=record("run"))

        async def append(n: int) -> None:
            nonlocal seq
            events = step(n)
            began = time.perf_counter()
            seq = await store.append("run", events, expected_seq=seq, record=record("run"))
            append_s.append(time.perf_counter() - began)

        async def same_rows(n: int) -> None:
            # The same rows as the append: the run's summary and its three events.
            rows = [(e.type, e.at, encode_event(e).decode()) for e in step(n)]
            began = time.perf_counter()
            bare.execute("BEGIN IMMEDIATE")
            bare.execute(
                "UPDATE runs SET last_seq = ?, updated_at = ? WHERE run_id = 'run'",
                (3 * n + 3, time.time()),
            )
            bare.executemany(
                "INSERT INTO events (run_id, seq, type, at, body) VALUES ('run', ?, ?, ?, ?)",
                [(3 * n + 1 + i, *row) for i, row in enumerate(rows)],
            )
            bare.execute("COMMIT")
            same_s.append(time.perf_counter() - began)

        async def bodies_alone(n: int) -> None:
            # The floor: the three event bodies alone, into one table.
            bodies = [encode_event(e).decode() for e in step(n)]
            began = time.perf_counter()
            bare.execute("BEGIN IMMEDIATE")
            bare.executemany(
                "INSERT INTO bare VALUES ('run', ?, ?)",
                [(3 * n + i, body) for i, body in enumerate(bodies)],
            )
            bare.execute("COMMIT")
            rows_s.append(time.perf_counter() - began)

        variants = [append, same_rows, bodies_alone]
        for n in range(1, rounds + 1):
            # Each goes first in turn, after the same pause (an agent's step is not a loop
            # of appends), so that neither warm caches nor disk noise favour one.
            for k in range(3):
                await asyncio.sleep(0.0005)
                await variants[(n + k) % 3](n)
    bare.close()
    # Warm-up: the first tenth is left out.
    cut = rounds // 10
    a, same, floor = (statistics.median(xs[cut:]) for xs in (append_s, same_s, rows_s))
    print(f"SQLiteStore.append of a 3-event step, median of {rounds - cut}: {ms(a)}")
    print(f"bare FULL commit of the same rows (run summary + 3 events): {ms(same)}")
    print(f"bare FULL commit of the 3 event bodies alone, one table:    {ms(floor)}")
    print(f"ratio append / bare commit of the same rows: {a / same:.2f}  (target <= 1.5)")
    print(f"ratio append / 3 bodies alone:               {a / floor:.2f}")


async def concurrent_appends(directory: Path, tasks: int, steps: int) -> None:
    for label, max_group in (("group commit", 256), ("one commit per append", 1)):
        path = directory / f"concurrent-{max_group}.db"
        async with SQLiteStore(path, max_group=max_group) as store:
            for t in range(tasks):
                await store.append(f"r{t}", step(0), expected_seq=0, record=record(f"r{t}"))

            async def writer(run_id: str, store: Store = store) -> None:
                seq = 3
                for n in range(1, steps + 1):
                    seq = await store.append(
                        run_id, step(n, run_id), expected_seq=seq, record=record(run_id)
                    )

            began = time.perf_counter()
            await asyncio.gather(*(writer(f"r{t}") for t in range(tasks)))
            elapsed = time.perf_counter() - began
        rate = tasks * steps / elapsed
        print(f"{tasks} tasks x {steps} appends, {label}: {rate:,.0f} appends/s")


async def submit_to_claim(
    open_worker: Callable[[], SQLStore],
    open_submitter: Callable[[], SQLStore],
    rounds: int,
    name: str,
) -> None:
    claimed_at: dict[str, float] = {}
    submitter = asyncio.get_running_loop()
    claimed = asyncio.Event()
    ready = threading.Event()
    stop = threading.Event()

    def worker() -> None:
        async def main() -> None:
            async with open_worker() as store:
                await store.list_runs()
                ready.set()
                while not stop.is_set():
                    async with store.watch(None) as queue:
                        leases = await store.claim_runs(owner="w", ttl_s=60, limit=10)
                        for lease in leases:
                            claimed_at[lease.run_id] = time.perf_counter()
                            submitter.call_soon_threadsafe(claimed.set)
                        if not leases:
                            await queue.wait(0.2)

        asyncio.run(main())

    thread = threading.Thread(target=worker)
    thread.start()
    ready.wait()
    latencies: list[float] = []
    async with open_submitter() as store:
        for n in range(rounds):
            run_id = f"q{n}-{uuid.uuid4().hex[:6]}"
            await asyncio.sleep(0.02)  # the worker is idle, waiting
            claimed.clear()
            began = time.perf_counter()
            await store.start_run(
                run_id,
                step(0, run_id)[:1],
                record=record(run_id, status="queued", thread_id=run_id),
                owner=None,
                ttl_s=60,
            )
            await asyncio.wait_for(claimed.wait(), timeout=5)
            latencies.append(claimed_at[run_id] - began)
    stop.set()
    thread.join()
    latencies.sort()
    p50 = statistics.median(latencies)
    p90 = latencies[int(len(latencies) * 0.9) - 1]
    print(f"{name} submit-to-claim, {rounds} runs: p50 {ms(p50)}, p90 {ms(p90)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1500)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.tasks, args.steps, args.claims = 50, 8, 5, 10
    print(f"{platform.platform()}, {os.cpu_count()} cores, SQLite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        directory = Path(tmp)
        await one_append_vs_bare_commit(directory, args.rounds)
        await concurrent_appends(directory, args.tasks, args.steps)
        path = directory / "claims.db"
        await submit_to_claim(
            lambda: SQLiteStore(path), lambda: SQLiteStore(path), args.claims, "SQLite"
        )
    if args.postgres:
        from keel.stores._postgres import PostgresStore

        schema = f"keel_bench_{uuid.uuid4().hex[:8]}"
        try:
            await submit_to_claim(
                lambda: PostgresStore(args.postgres, schema=schema),
                lambda: PostgresStore(args.postgres, schema=schema),
                args.claims,
                "PostgreSQL",
            )
        finally:
            import psycopg

            async with await psycopg.AsyncConnection.connect(args.postgres, autocommit=True) as c:
                await c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    asyncio.run(main())

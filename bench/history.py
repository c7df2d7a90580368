"""Decision-history queries at scale: a filtered page of 50 runs out of 1,000,000.

    python bench/history.py                               # SQLite, 1,000,000 runs
    python bench/history.py --postgres URL                # and PostgreSQL (a fresh schema)
    python bench/history.py --smoke                       # seconds; the test suite runs this

The store's schema is created by the store itself; then the runs are inserted in bulk with
plain SQL into its tables (``runs``, and ``run_tools``: what the store's triggers would write),
in the layout a store writes: several agents, statuses, tenants, users, threads, tools, costs,
durations and reasons, spread over 90 days. Journaling a million runs one by one would take
hours and measure something else. PostgreSQL gets ``ANALYZE`` (autovacuum would run it on a
live database); SQLite gets none (a store never runs it: the listing names its index).

Each query is a page of 50 through ``store.list_runs`` (statement, rows and decoding), its
parameters drawn again on every repeat (another agent, tenant, tool...): p50 and p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from keel.ports import RunQuery, Store
from keel.stores import SQLiteStore

AGENTS = ["support", "billing", "triage", "research", "sales", "onboarding", "ops", "legal"]
AGENT_WEIGHTS = [40, 20, 12, 8, 8, 6, 4, 2]
STATUSES = ["completed", "failed", "paused", "awaiting_approval", "cancelled", "running"]
STATUS_WEIGHTS = [85, 7, 3, 2, 2, 1]
ERRORS = ["max_steps", "model.error", "tool.failed", "timeout", "budget.exceeded"]
TOOLS = [
    "lookup_order",
    "search_kb",
    "refund",
    "create_ticket",
    "send_email",
    "get_invoice",
    "update_address",
    "escalate",
    "web_search",
    "summarize",
    "translate",
    "schedule_call",
]
TOOL_WEIGHTS = [30, 25, 5, 10, 8, 6, 3, 3, 4, 3, 2, 1]
TENANTS = 200
USERS = 50_000
DAYS = 90
NOW = 1_780_000_000.0

COLUMNS = (
    "run_id",
    "thread_id",
    "agent",
    "model",
    "status",
    "created_at",
    "updated_at",
    "input",
    "steps",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "output_preview",
    "reason_code",
    "reason",
    "last_seq",
    "holds_thread",
    "tenant",
    "user",
    "tools",
)


def tenant_of(rng: random.Random) -> str | None:
    if rng.random() < 0.1:
        return None
    return f"tenant-{min(int(rng.paretovariate(1.2)), TENANTS)}"


def rows(count: int, seed: int = 7) -> Iterator[tuple[tuple[Any, ...], list[str]]]:
    """``count`` run rows (oldest first) and the tools each called."""
    rng = random.Random(seed)
    step = DAYS * 86400 / count
    for n in range(count):
        created = NOW - DAYS * 86400 + n * step + rng.random() * step
        status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        agent = rng.choices(AGENTS, AGENT_WEIGHTS)[0]
        tools = sorted(set(rng.choices(TOOLS, TOOL_WEIGHTS, k=rng.choice((0, 1, 1, 2, 3)))))
        cost = round(rng.lognormvariate(-4.6, 1.0), 6)
        duration = rng.lognormvariate(1.5, 1.0)
        reason = rng.choice(ERRORS) if status in ("failed", "cancelled") else None
        user = None if rng.random() < 0.2 else f"u-{rng.randrange(USERS)}"
        steps = len(tools) + 1
        row = (
            f"run_{n:012d}",
            f"thread-{n // 3}",
            agent,
            "openai:gpt-4o-mini",
            status,
            created,
            created + duration,
            f"Customer question number {n} about an order and its delivery",
            steps,
            len(tools),
            800 * steps,
            60 * steps,
            cost,
            "An answer about the order." if status == "completed" else None,
            reason,
            f"{reason} happened" if reason else None,
            3 * steps + 2,
            status in ("running", "paused", "awaiting_approval"),
            tenant_of(rng),
            user,
            json.dumps(tools, separators=(",", ":")),
        )
        yield row, tools


def batches(count: int, size: int = 20_000) -> Iterator[tuple[list[tuple[Any, ...]], list[Any]]]:
    runs: list[tuple[Any, ...]] = []
    tools: list[tuple[str, float, str]] = []
    for row, names in rows(count):
        runs.append(row)
        tools += [(name, row[5], row[0]) for name in names]
        if len(runs) == size:
            yield runs, tools
            runs, tools = [], []
    if runs:
        yield runs, tools


_QUOTED = ", ".join('"user"' if c == "user" else c for c in COLUMNS)


def fill_sqlite(path: Path, count: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    marks = ", ".join("?" for _ in COLUMNS)
    # The triggers' work is done by the bulk insert of run_tools.
    triggers = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'runs'"
    ).fetchall()
    with conn:
        for name, _ in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        for runs, tools in batches(count):
            conn.executemany(f"INSERT INTO runs ({_QUOTED}) VALUES ({marks})", runs)
            conn.executemany("INSERT INTO run_tools VALUES (?, ?, ?)", tools)
        for _, sql in triggers:
            conn.execute(sql)
    conn.close()


async def fill_postgres(url: str, schema: str, count: int) -> None:
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        runs = sql.SQL("COPY {}.runs ({}) FROM STDIN").format(
            sql.Identifier(schema), sql.SQL(_QUOTED)
        )
        tools = sql.SQL("COPY {}.run_tools (tool, created_at, run_id) FROM STDIN").format(
            sql.Identifier(schema)
        )
        table = sql.SQL("{}.runs").format(sql.Identifier(schema))
        await conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(table))
        for run_rows, tool_rows in batches(count):
            async with conn.cursor() as cursor:
                async with cursor.copy(runs) as copy:
                    for row in run_rows:
                        await copy.write_row(row)
                async with cursor.copy(tools) as copy:
                    for row in tool_rows:
                        await copy.write_row(row)
        await conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(table))
        await conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
        await conn.execute(sql.SQL("VACUUM ANALYZE {}.run_tools").format(sql.Identifier(schema)))


def queries(rng: random.Random) -> dict[str, Callable[[], RunQuery]]:
    """Typical filters, each drawing its parameters anew."""

    def agent() -> str:
        return rng.choices(AGENTS, AGENT_WEIGHTS)[0]

    def tenant() -> str:
        return f"tenant-{min(int(rng.paretovariate(1.2)), TENANTS)}"

    return {
        "newest (no filter)": RunQuery,
        "agent + status=paused": lambda: RunQuery(agent=agent(), status="paused"),
        "agent + failed|cancelled": lambda: RunQuery(agent=agent(), status=("failed", "cancelled")),
        "tenant + since 7d": lambda: RunQuery(tenant=tenant(), since=NOW - 7 * 86400),
        "user": lambda: RunQuery(user=f"u-{rng.randrange(USERS)}"),
        "tool=refund": lambda: RunQuery(tool="refund"),
        "tool + agent": lambda: RunQuery(tool=rng.choice(TOOLS[:6]), agent=agent()),
        "error=tool.failed": lambda: RunQuery(error=rng.choice(ERRORS)),
        "cost $0.05-$0.50": lambda: RunQuery(min_cost=0.05, max_cost=0.5),
        "duration > 60 s": lambda: RunQuery(min_duration=60.0),
        "status=paused, since 30d": lambda: RunQuery(status="paused", since=NOW - 30 * 86400),
    }


async def measure(store: Store, repeats: int) -> dict[str, tuple[float, float, int]]:
    rng = random.Random(11)
    found: dict[str, tuple[float, float, int]] = {}
    await store.list_runs(limit=1)  # open, migrate-check
    named = queries(rng)
    for name, make in named.items():
        times: list[float] = []
        sizes: list[int] = []
        for _ in range(repeats):
            query = make()
            started = time.perf_counter()
            page = await store.list_runs(query, limit=50)
            times.append((time.perf_counter() - started) * 1000)
            sizes.append(len(page))
        rows = round(statistics.mean(sizes))
        found[name] = (_percentile(times, 50), _percentile(times, 99), rows)
    # Paging: the fifth page of one agent's runs, by cursor.
    times = []
    for _ in range(repeats):
        query = RunQuery(agent=rng.choices(AGENTS, AGENT_WEIGHTS)[0])
        page = await store.list_runs(query, limit=50)
        for _ in range(3):
            page = await store.list_runs(query, limit=50, before=page[-1].cursor)
        started = time.perf_counter()
        page = await store.list_runs(query, limit=50, before=page[-1].cursor)
        times.append((time.perf_counter() - started) * 1000)
    found["agent, 5th page by cursor"] = (_percentile(times, 50), _percentile(times, 99), 50)
    return found


def _percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(
    name: str, count: int, fill_s: float, found: dict[str, tuple[float, float, int]]
) -> None:
    print(f"\n{name}: {count:,} runs (filled in {fill_s:.0f} s)")
    print("| query (page of 50) | p50 ms | p99 ms | rows |")
    print("|---|---|---|---|")
    for query, (p50, p99, size) in found.items():
        print(f"| {query} | {p50:.2f} | {p99:.2f} | {size} |")
    worst = max(p50 for p50, _, _ in found.values())
    print(f"worst p50: {worst:.2f} ms (target <= 50 ms)")


async def run_sqlite(count: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        async with SQLiteStore(path) as store:
            await store.upgrade()
        started = time.perf_counter()
        fill_sqlite(path, count)
        fill_s = time.perf_counter() - started
        async with SQLiteStore(path) as store:
            found = await measure(store, repeats)
        report("sqlite", count, fill_s, found)


async def run_postgres(url: str, count: int, repeats: int) -> None:
    from keel.stores import PostgresStore

    schema = f"keel_bench_history_{uuid.uuid4().hex[:8]}"
    try:
        async with PostgresStore(url, schema=schema) as store:
            await store.upgrade()
        started = time.perf_counter()
        await fill_postgres(url, schema, count)
        fill_s = time.perf_counter() - started
        async with PostgresStore(url, schema=schema) as store:
            found = await measure(store, repeats)
        report("postgres", count, fill_s, found)
    finally:
        import psycopg
        from psycopg import sql

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    options = parser.parse_args()
    count, repeats = (3_000, 5) if options.smoke else (options.runs, options.repeats)
    print(f"python {platform.python_version()} on {platform.platform()}, {sys.platform}")
    if not options.no_sqlite:
        asyncio.run(run_sqlite(count, repeats))
    if options.postgres:
        asyncio.run(run_postgres(options.postgres, count, repeats))


if __name__ == "__main__":
    main()

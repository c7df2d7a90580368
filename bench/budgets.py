"""What the budget check costs per model call, against a plain durable write.

    python bench/budgets.py                          # SQLite
    python bench/budgets.py --postgres URL           # SQLite and PostgreSQL
    python bench/budgets.py --smoke                  # seconds, to check that it runs

Per model call the runtime makes one ledger call: ``reserve`` of this call's worst case,
carrying the settlement of the previous call (``settle=``). Three budgets apply (agent,
tenant, global), as in a multi-tenant app. What is measured, per store:

- **statements per call**: statements the ledger sent for ``reserve(settle=...)``, counted on
  the connection (PostgreSQL: each ``execute``, one round trip each; SQLite: every statement
  traced, ``BEGIN IMMEDIATE`` and ``COMMIT`` included, all in process).
- **time per call**: the median of ``reserve(settle=...)``, against the median of a baseline
  store write on the same database: one durable one-row ``INSERT`` commit (SQLite:
  ``BEGIN IMMEDIATE``/``INSERT``/``COMMIT`` with ``synchronous=FULL``; PostgreSQL: one
  ``INSERT`` in autocommit). The two are interleaved so that noise favours neither; the ratio
  is what to compare across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from keel.budgets import Budget, BudgetLedger, Settlement, open_budget_ledger

BUDGETS = [
    Budget("agent", 1e6),
    Budget("tenant", 1e6),
    Budget("global", 1e8, window="month"),
]
KEYS = {"agent": "support", "tenant": "acme", "user": "u-7"}


class Calls:
    """Reserve-with-settle calls of one run, one per model call."""

    def __init__(self, ledger: BudgetLedger) -> None:
        self.ledger = ledger
        self.run = f"run_{uuid.uuid4().hex[:8]}"
        self.n = 0

    async def next(self) -> None:
        self.n += 1
        settle = None if self.n == 1 else Settlement(f"{self.run}:{self.n - 1}", 0.0012)
        await self.ledger.reserve(
            f"{self.run}:{self.n}", self.run, KEYS, 0.004, budgets=BUDGETS, now=time.time(),
            settle=settle,
        )  # fmt: skip


async def timed(work: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def compare(
    calls: Calls, baseline: Callable[[], Awaitable[None]], rounds: int
) -> tuple[float, float]:
    """Median seconds of a budget call and of a baseline write, interleaved."""
    for _ in range(min(20, rounds)):  # warm up both
        await calls.next()
        await baseline()
    ours: list[float] = []
    base: list[float] = []
    for n in range(rounds):
        pair = [(ours, calls.next), (base, baseline)]
        for samples, work in pair if n % 2 else reversed(pair):
            samples.append(await timed(work))
    return statistics.median(ours), statistics.median(base)


async def sqlite(rounds: int, directory: Path) -> dict[str, Any]:
    path = directory / "keel.db"
    ledger = open_budget_ledger(path)
    calls = Calls(ledger)
    await calls.next()  # creates the tables
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, body TEXT)")

    def write() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO bench_rows (body) VALUES (?)", ("x" * 200,))
        conn.execute("COMMIT")

    async def baseline() -> None:
        await asyncio.to_thread(write)

    statements: list[str] = []
    traced = ledger._conn  # type: ignore[attr-defined]  # the ledger's own connection
    traced.set_trace_callback(statements.append)
    await calls.next()
    traced.set_trace_callback(None)
    ours, base = await compare(calls, baseline, rounds)
    conn.close()
    await ledger.aclose()
    return {"store": "sqlite", "statements": len(statements), "ours": ours, "base": base}


async def postgres(rounds: int, url: str) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    schema = f"keel_bench_{uuid.uuid4().hex[:8]}"
    ledger = open_budget_ledger(url, schema=schema)
    calls = Calls(ledger)
    await calls.next()  # installs the tables and functions
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None)
    table = sql.Identifier(schema, "bench_rows")
    await conn.execute(
        sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, body text)").format(table)
    )
    insert = sql.SQL("INSERT INTO {} (body) VALUES (%s)").format(table)

    async def baseline() -> None:
        await conn.execute(insert, ("x" * 200,))

    sent: list[object] = []
    original = psycopg.AsyncCursor.execute

    async def counting(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(query)
        return await original(self, query, *args, **kwargs)

    psycopg.AsyncCursor.execute = counting  # type: ignore[method-assign]
    try:
        await calls.next()
    finally:
        psycopg.AsyncCursor.execute = original  # type: ignore[method-assign]
    try:
        ours, base = await compare(calls, baseline, rounds)
    finally:
        await ledger.aclose()
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        await conn.close()
    return {"store": "postgres", "statements": len(sent), "ours": ours, "base": base}


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    rounds = 20 if args.smoke else args.rounds
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, Python {platform.python_version()}")
    print(f"reserve(settle=previous) per model call, 3 budgets, {rounds} rounds")
    results = []
    with tempfile.TemporaryDirectory() as directory:
        results.append(await sqlite(rounds, Path(directory)))
    if args.postgres:
        results.append(await postgres(rounds, args.postgres))
    print("| store | statements per call | budget call (median) | baseline write | ratio |")
    print("|---|---|---|---|---|")
    for r in results:
        trips = "round trip" if r["store"] == "postgres" else "in process"
        print(
            f"| {r['store']} | {r['statements']} ({trips}) | {r['ours'] * 1e6:,.0f} µs | "
            f"{r['base'] * 1e6:,.0f} µs | {r['ours'] / r['base']:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())

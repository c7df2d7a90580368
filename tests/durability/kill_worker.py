"""A worker process for the kill test: runs many jobs whose tools have real side effects,
recorded in a ledger apart from the journal, and can be killed at any moment.

    python kill_worker.py --journal sqlite:///path/keel.db --ledger path/ledger.db --jobs 200

Each job is a run on its own thread (``job-N``) of an agent that, step by step, checks the
job (read-only), charges a card (a write that is NOT safe to repeat), reserves stock and checks
again in parallel (an idempotent write and a read), charges again (a small charge that needs a
person's approval), then answers. Every charge and reservation is a row in the ledger, written
and committed inside the tool: a crash between that commit and the journal's record of the
result is exactly the window Keel must handle.

On start the worker recovers interrupted runs (``Runtime(agents=...)``), starts the jobs that
have no run yet, keeps recovering runs whose leases expire, and decides, as an operator would,
on what waits for a person: it approves the small charges, and for a charge whose effect is in
doubt it looks at the ledger (confirm if it happened, let it run again if not). So kills land
right after decisions and during the attempts they allow, too. It exits 0 when every job's run
has completed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

from keel import (
    Agent,
    Limits,
    RunContext,
    RunLeasedError,
    Runtime,
    ThreadBusyError,
    UsageError,
    tool,
)
from keel.messages import ModelRequest, ToolResultMessage, UserMessage
from keel.ports import Store
from keel.testing import FunctionModel, call

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (key TEXT NOT NULL, kind TEXT NOT NULL, job TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (key TEXT PRIMARY KEY, job TEXT NOT NULL);
"""


class Ledger:
    """The world outside Keel: a separate SQLite file, committed per effect."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(LEDGER_SCHEMA)

    def charge(self, key: str, job: str) -> None:
        # No uniqueness on purpose: a second charge with the same key would show as a duplicate.
        self._conn.execute("INSERT INTO effects VALUES (?, 'charge', ?)", (key, job))

    def reserve(self, key: str, job: str) -> None:
        self._conn.execute("INSERT OR IGNORE INTO reservations VALUES (?, ?)", (key, job))

    def charged(self, key: str) -> bool:
        found = self._conn.execute(
            "SELECT 1 FROM effects WHERE key = ? AND kind = 'charge'", (key,)
        ).fetchone()
        return found is not None

    def close(self) -> None:
        self._conn.close()


async def _pause() -> None:
    # Real time passes in every effect, so kills land inside them as well as between them.
    await asyncio.sleep(random.uniform(0.005, 0.03))


@tool(side_effects="read")
async def check(ctx: RunContext[Ledger], job: str) -> str:
    """Check a job's state."""
    await _pause()
    return f"{job} ok"


@tool(side_effects="write", requires_approval=lambda args: args["amount_usd"] < 6)
async def charge(ctx: RunContext[Ledger], job: str, amount_usd: float) -> str:
    """Charge the customer's card (not safe to repeat)."""
    await _pause()
    ctx.deps.charge(ctx.idempotency_key, job)
    await _pause()  # the effect happened; the journal does not know yet
    return f"charged {amount_usd} for {job}"


@tool(idempotent=True)
async def reserve(ctx: RunContext[Ledger], job: str) -> str:
    """Reserve stock, once per idempotency key."""
    await _pause()
    ctx.deps.reserve(ctx.idempotency_key, job)
    await _pause()
    return f"reserved for {job}"


def _plan(job: str) -> list[Any]:
    return [
        call("check", job=job),
        call("charge", job=job, amount_usd=10),
        [call("reserve", job=job), call("check", job=job)],
        call("charge", job=job, amount_usd=5),
        f"done {job}",
    ]


async def _model(request: ModelRequest) -> Any:
    await _pause()
    job = next(m.content for m in request.messages if isinstance(m, UserMessage))
    results = sum(isinstance(m, ToolResultMessage) for m in request.messages)
    turns = [1, 1, 2, 1]
    position = 0
    while position < len(turns) and results >= turns[position]:
        results -= turns[position]
        position += 1
    return _plan(job)[position]


def make_agent(ledger: Ledger | None = None) -> Agent[str]:
    """The job agent (``ledger`` is its dependency; the test resolves decisions without one)."""
    return Agent(
        name="jobs",
        model=FunctionModel(_model),
        tools=[check, charge, reserve],
        limits=Limits(max_steps=10),
        deps=ledger,
    )


def open_journal(url: str, schema: str | None) -> Store:
    """The journal store for ``url`` (``sqlite:///path`` or ``postgresql://...``)."""
    if url.startswith("postgresql://"):
        from keel.stores._postgres import PostgresStore

        return PostgresStore(url, schema=schema or "keel")
    from keel.stores._sqlite import SQLiteStore

    return SQLiteStore(Path(url.removeprefix("sqlite://")))


async def work(options: argparse.Namespace) -> None:
    print("ready", flush=True)  # imported: the test times its kill from here, not from the start
    ledger = Ledger(options.ledger)
    agent = make_agent(ledger)
    store = open_journal(options.journal, options.schema)
    jobs = [f"job-{i:04d}" for i in range(options.jobs)]
    try:
        async with Runtime(store=store, agents=[agent], lease_ttl_s=options.lease_ttl) as runtime:
            gate = asyncio.Semaphore(options.concurrency)

            async def start(job: str) -> None:
                async with gate:
                    # The worker before this one may still be alive (they overlap) and may
                    # have started this job since it was listed: then the job is under way.
                    with contextlib.suppress(ThreadBusyError):
                        await runtime.run(agent, job, thread=job, if_busy="reject")

            while True:
                started = {r.thread_id for r in await store.list_runs(limit=None)}
                missing = [job for job in jobs if job not in started]
                await asyncio.gather(*(start(job) for job in missing))
                await runtime.recover(limit=1000)
                waiting = await runtime.waiting_runs()
                await asyncio.gather(*(decide(runtime, ledger, r.run_id, gate) for r in waiting))
                records = await store.list_runs(limit=None)
                if len(records) >= len(jobs) and all(
                    r.status in ("completed", "failed") for r in records
                ):
                    return
                await asyncio.sleep(0.05)
    finally:
        await store.close()
        ledger.close()


async def decide(runtime: Runtime, ledger: Ledger, run_id: str, gate: asyncio.Semaphore) -> None:
    """An operator's decisions: approve small charges; for a charge in doubt, the ledger says
    whether it happened."""
    async with gate:
        for pending in await runtime.pending_calls(run_id):
            try:
                if pending.kind == "interrupted" and ledger.charged(pending.idempotency_key):
                    await runtime.confirm(run_id, pending.call.id, by="ops", result="charged")
                else:
                    await runtime.approve(run_id, pending.call.id, by="ops")
            except (RunLeasedError, UsageError):
                return  # another life's lease, or already decided: next round


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--journal", required=True)
    parser.add_argument("--schema", default=None)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease-ttl", type=float, default=0.6)
    options = parser.parse_args()
    asyncio.run(work(options))
    sys.exit(0)


if __name__ == "__main__":
    main()

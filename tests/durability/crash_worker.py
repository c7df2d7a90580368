"""One life of a process that runs, recovers and decides on one run, and dies on purpose.

    python crash_worker.py --journal sqlite:///path/keel.db --ledger path/ledger.db \\
        --crash-after 7 [--before] [--schema S]

The journal store is wrapped so that the process stops with ``os._exit`` at a chosen durable
append, counted over this life: right after the append is durable (or, with ``--before``,
right before it is made). The test runs life after life, moving the crash point, until the run
completes; the ledger, a separate file the tools write to, is the world the run acts on.

Each life: start the run if there is none, recover it (once its lease has expired), and decide
on whatever waits for a person the way an operator would: approve a call that needs approval,
and for a call whose effect is in doubt look at the ledger: confirm it (it happened) or let it
run again (it did not). Lives print ``appends=N`` (how many durable appends they made) and exit
0 when the run completed, 3 when it still needs another life, 77 when they crashed.

The run goes through every kind of step: a refund that needs approval (a write that is not safe
to repeat), a charge (same, no approval), a model call that fails once and is retried, a
reservation that is idempotent and retried after a failure, and a final answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keel import Agent, Limits, RunContext, Runtime, tool
from keel.errors import ModelConnectionError, RunLeasedError
from keel.messages import ModelRequest, ToolResultMessage
from keel.ports import Lease, RunRecord, Store
from keel.resilience import Retrying, RetryPolicy
from keel.stores import open_store
from keel.testing import FunctionModel, call

CRASHED = 77
UNFINISHED = 3
THREAD = "order-7"


class Ledger:
    """The world outside Keel: one row per effect, committed inside the tool."""

    def __init__(self, path: str) -> None:
        # Sync tools run in threads of their own: the ledger is used from any of them.
        self._conn = sqlite3.connect(
            path, isolation_level=None, timeout=30, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS effects (kind TEXT NOT NULL, key TEXT NOT NULL, "
            "attempt INTEGER NOT NULL)"
        )

    def record(self, kind: str, key: str, attempt: int) -> None:
        self._conn.execute("INSERT INTO effects VALUES (?, ?, ?)", (kind, key, attempt))

    def happened(self, key: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM effects WHERE key = ?", (key,)).fetchone()
        return row is not None

    def rows(self) -> list[tuple[str, str]]:
        return [(k, key) for k, key in self._conn.execute("SELECT kind, key FROM effects")]


@tool(requires_approval=lambda args: args["amount_usd"] > 100)
def refund(ctx: RunContext[Ledger], order_id: str, amount_usd: float) -> str:
    """Refund an order (not safe to repeat)."""
    ctx.deps.record("refund", ctx.idempotency_key, ctx.attempt)
    return f"refunded {amount_usd} on {order_id}"


@tool
def charge(ctx: RunContext[Ledger], order_id: str, amount_usd: float) -> str:
    """Charge a restocking fee (not safe to repeat)."""
    ctx.deps.record("charge", ctx.idempotency_key, ctx.attempt)
    return f"charged {amount_usd} on {order_id}"


_FLAKY: dict[str, int] = {}


@tool(idempotent=True, retries=2)
def reserve(ctx: RunContext[Ledger], order_id: str) -> str:
    """Reserve a replacement, once per idempotency key (it fails on its first try)."""
    tries = _FLAKY[ctx.idempotency_key] = _FLAKY.get(ctx.idempotency_key, 0) + 1
    if tries == 1:
        raise ConnectionError("warehouse busy")
    if not ctx.deps.happened(ctx.idempotency_key):
        ctx.deps.record("reserve", ctx.idempotency_key, ctx.attempt)
    return f"reserved for {order_id}"


PLAN: list[Any] = [
    call("refund", order_id="7", amount_usd=150),
    call("charge", order_id="7", amount_usd=5),
    call("reserve", order_id="7"),
    "Refunded, fee charged, replacement reserved.",
]


class _Flaky:
    """A model that fails the first time each step is asked (a retryable outage)."""

    def __init__(self) -> None:
        self.asked: set[int] = set()

    async def __call__(self, request: ModelRequest) -> Any:
        done = sum(isinstance(m, ToolResultMessage) for m in request.messages)
        if done not in self.asked:
            self.asked.add(done)
            raise ModelConnectionError("connection reset", model="function")
        return PLAN[done]


def make_agent(ledger: Ledger | None) -> Agent[str]:
    model = Retrying(FunctionModel(_Flaky()), RetryPolicy(max_attempts=3, initial_backoff_s=0.001))
    return Agent(
        name="desk",
        model=model,
        tools=[refund, charge, reserve],
        limits=Limits(max_steps=8),
        deps=ledger,
    )


class CrashingStore:
    """A store that stops the process at a chosen durable append (see the module docstring)."""

    def __init__(self, inner: Store, *, crash_after: int | None, before: bool) -> None:
        self._inner = inner
        self._crash_after = crash_after
        self._before = before
        self.appends = 0

    def _due(self) -> bool:
        return self._crash_after is not None and self.appends + 1 == self._crash_after

    def _die(self) -> None:
        print(f"appends={self.appends}", flush=True)
        os._exit(CRASHED)

    async def start_run(self, run_id: str, events: Sequence[Any], **options: Any) -> Lease | None:
        if self._due() and self._before:
            self._die()
        lease = await self._inner.start_run(run_id, events, **options)
        self.appends += 1
        if self.appends == self._crash_after:
            self._die()
        return lease

    async def append(self, run_id: str, events: Sequence[Any], **options: Any) -> int:
        if self._due() and self._before:
            self._die()
        seq = await self._inner.append(run_id, events, **options)
        self.appends += 1
        if self.appends == self._crash_after:
            self._die()
        return seq

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def life(options: argparse.Namespace) -> int:
    ledger = Ledger(options.ledger)
    agent = make_agent(ledger)
    inner = open_store(options.journal, schema=options.schema)
    store = CrashingStore(inner, crash_after=options.crash_after, before=options.before)
    try:
        runtime = Runtime(
            store=store,
            agents=[agent],
            lease_ttl_s=options.lease_ttl,
            recover_on_start=False,
        )
        async with runtime:
            records = await inner.list_runs(thread_id=THREAD)
            if not records:
                await runtime.run(agent, "Refund order 7 and reserve a replacement", thread=THREAD)
            for _ in range(200):
                [record] = await inner.list_runs(thread_id=THREAD)
                if record.status == "completed":
                    return 0
                if record.status == "awaiting_approval":
                    await decide(runtime, record, ledger)
                    continue
                recovery = await runtime.recover()
                if not recovery.results:
                    await asyncio.sleep(options.lease_ttl / 4)  # a dead process's lease
            return UNFINISHED
    finally:
        print(f"appends={store.appends}", flush=True)
        await inner.close()


async def decide(runtime: Runtime, record: RunRecord, ledger: Ledger) -> None:
    for pending in await runtime.pending_calls(record.run_id):
        try:
            if pending.kind == "interrupted" and ledger.happened(pending.idempotency_key):
                await runtime.confirm(
                    record.run_id, pending.call.id, by="ops", result="it happened"
                )
            else:
                await runtime.approve(record.run_id, pending.call.id, by="ops")
        except RunLeasedError:
            return  # the crashed life's lease: decide once it expires


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--journal", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--schema", default="keel")
    parser.add_argument("--crash-after", type=int, default=None)
    parser.add_argument("--before", action="store_true")
    parser.add_argument("--lease-ttl", type=float, default=0.3)
    options = parser.parse_args()
    code = asyncio.run(life(options))
    sys.exit(code)


def ledger_rows(path: Path) -> list[tuple[str, str]]:
    """The effects the ledger holds (for the test)."""
    return Ledger(str(path)).rows()


def dump(path: Path) -> str:
    """The ledger as JSON (for failure messages)."""
    return json.dumps(ledger_rows(path))


if __name__ == "__main__":
    main()

"""A worker process for the delegation kill tests: parents that delegate to child runs (an
agent as a tool, and a fan-out), whose tools have real side effects recorded in a ledger apart
from the journal; it can be killed at any moment.

    python delegation_worker.py kill --journal PATH --ledger PATH --jobs 30
    python delegation_worker.py fanout --journal PATH --ledger PATH

``kill``: each job is a ``boss`` run on its own thread that hands the job to a ``researcher``
(a child run), then fans out to two ``helper`` children, then answers. The researcher charges
a card (a write NOT safe to repeat), reserves stock and checks (an idempotent write and a
read, at once), charges again (a small charge a person approves), then answers; its approval
pauses the boss. Like an operator, the worker approves small charges, settles charges whose
effect a kill left in doubt from the ledger, and resumes the bosses whose children no longer
wait. It exits 0 when every boss run has completed.

``fanout``: one ``lead`` run fans out to four ``counter`` children, one at a time. In the
first life, the process kills itself (SIGKILL) when the third child calls its model; in the
next, recovery finishes the run. Model calls and effects are counted per life in the ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from keel import (
    Agent,
    Limits,
    Price,
    RunContext,
    RunLeasedError,
    Runtime,
    ThreadBusyError,
    Usage,
    UsageError,
    tool,
)
from keel import fan_out as fan_out_children
from keel.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    ToolResultMessage,
    UserMessage,
)
from keel.ports import Store
from keel.testing import FunctionModel, call
from tests.durability import kill_worker

PRICES = {"acme:*": Price(input_per_mtok=1000.0, output_per_mtok=2000.0)}

MORE_LEDGER = """
CREATE TABLE IF NOT EXISTS model_calls (agent TEXT NOT NULL, input TEXT NOT NULL, life INT);
CREATE TABLE IF NOT EXISTS lives (life INTEGER PRIMARY KEY AUTOINCREMENT);
"""


class Ledger(kill_worker.Ledger):
    """The kill test's ledger, with model calls and the worker's lives recorded too."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._conn.executescript(MORE_LEDGER)
        self.life = 0

    def begin_life(self) -> int:
        self.life = int(self._conn.execute("INSERT INTO lives DEFAULT VALUES").lastrowid or 0)
        return self.life

    def tally(self, key: str, job: str) -> None:
        self._conn.execute("INSERT INTO effects VALUES (?, 'tally', ?)", (key, job))

    def model_call(self, agent: str, text: str) -> None:
        self._conn.execute("INSERT INTO model_calls VALUES (?, ?, ?)", (agent, text, self.life))


_pause = kill_worker._pause
check, charge, reserve = kill_worker.check, kill_worker.charge, kill_worker.reserve


def _answer(turn: Any) -> ModelResponse:
    """A turn that used 1,000 input tokens: $1 at the test's price, so sums are exact."""
    if isinstance(turn, str):
        message = AssistantMessage(content=turn)
    else:
        message = AssistantMessage(tool_calls=tuple(turn if isinstance(turn, list) else [turn]))
    return ModelResponse(message=message, usage=Usage(requests=1, input_tokens=1000))


def _job(request: ModelRequest) -> tuple[str, int]:
    text = next(m.content for m in request.messages if isinstance(m, UserMessage))
    results = sum(isinstance(m, ToolResultMessage) for m in request.messages)
    return str(text), results


async def _researcher_model(request: ModelRequest) -> ModelResponse:
    await _pause()
    job, results = _job(request)
    plan: list[Any] = [
        call("charge", job=job, amount_usd=10),
        [call("reserve", job=job), call("check", job=job)],
        call("charge", job=job, amount_usd=5),
        f"researched {job}",
    ]
    position = {0: 0, 1: 1, 3: 2}.get(results, 3)
    return _answer(plan[position])


async def _helper_model(request: ModelRequest) -> ModelResponse:
    await _pause()
    job, results = _job(request)
    return _answer(call("reserve", job=job) if results == 0 else f"helped {job}")


async def _boss_model(request: ModelRequest) -> ModelResponse:
    await _pause()
    job, results = _job(request)
    plan: list[Any] = [call("researcher", input=job), call("survey", job=job), f"done {job}"]
    return _answer(plan[min(results, 2)])


def make_agents(ledger: Ledger | None = None) -> Agent[str]:
    """The boss agent (its tools hold the researcher and helper agents)."""
    limits = Limits(max_steps=10)
    researcher = Agent(
        name="researcher",
        model=FunctionModel(_researcher_model, name="acme:researcher"),
        tools=[check, charge, reserve],
        limits=limits,
        deps=ledger,
    )
    helper = Agent(
        name="helper",
        model=FunctionModel(_helper_model, name="acme:helper"),
        tools=[reserve],
        limits=limits,
        deps=ledger,
    )

    @tool(idempotent=True)
    async def survey(ctx: RunContext[Ledger], job: str) -> str:
        """Ask two helpers about the job, at once."""
        tasks = [(helper, f"{job}/a"), (helper, f"{job}/b")]
        results = await fan_out_children(ctx, tasks, max_concurrency=2)
        return "; ".join(str(r.output) for r in results)

    return Agent(
        name="boss",
        model=FunctionModel(_boss_model, name="acme:boss"),
        tools=[researcher.as_tool(), survey],
        limits=limits,
        deps=ledger,
    )


def make_lead(ledger: Ledger | None = None, *, kill_at: str | None = None) -> Agent[str]:
    """The fan-out scenario's lead agent; its counters kill the process at ``kill_at``."""

    async def counter_model(request: ModelRequest) -> ModelResponse:
        text, results = _job(request)
        if results == 0 and ledger is not None:
            ledger.model_call("counter", text)
            if text == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return _answer(call("tally", item=text) if results == 0 else f"counted {text}")

    @tool(idempotent=True)
    async def tally(ctx: RunContext[Ledger], item: str) -> str:
        """Count an item, once per idempotency key."""
        ctx.deps.tally(ctx.idempotency_key, item)
        return "counted"

    counter = Agent(
        name="counter",
        model=FunctionModel(counter_model, name="acme:counter"),
        tools=[tally],
        deps=ledger,
    )

    @tool(idempotent=True)
    async def count_all(ctx: RunContext[Ledger]) -> list[str]:
        """Count four items, one at a time."""
        tasks = [(counter, f"item-{i}") for i in range(4)]
        results = await fan_out_children(ctx, tasks, max_concurrency=1)
        return [str(r.output) for r in results]

    def lead_model(request: ModelRequest) -> ModelResponse:
        _, results = _job(request)
        return _answer(call("count_all") if results == 0 else "all counted")

    return Agent(
        name="lead",
        model=FunctionModel(lead_model, name="acme:lead"),
        tools=[count_all],
        deps=ledger,
    )


def open_journal(path: str) -> Store:
    """The SQLite journal at ``path``."""
    from keel.stores._sqlite import SQLiteStore

    return SQLiteStore(Path(path))


async def kill_work(options: argparse.Namespace) -> None:
    print("ready", flush=True)  # imported: the test times its kill from here
    ledger = Ledger(options.ledger)
    ledger.begin_life()
    boss = make_agents(ledger)
    store = open_journal(options.journal)
    jobs = [f"job-{i:04d}" for i in range(options.jobs)]
    try:
        async with Runtime(
            store=store, agents=[boss], lease_ttl_s=options.lease_ttl, prices=PRICES
        ) as runtime:
            gate = asyncio.Semaphore(4)

            async def start(job: str) -> None:
                async with gate:
                    # The worker before this one may still be alive (they overlap) and may
                    # have started this job since it was listed: then it is that one's.
                    with contextlib.suppress(ThreadBusyError):
                        await runtime.run(boss, job, thread=job, if_busy="reject")

            while True:
                records = await store.list_runs(limit=None)
                started = {r.thread_id for r in records if r.agent == "boss"}
                await asyncio.gather(*(start(job) for job in jobs if job not in started))
                await runtime.recover(limit=1000)
                waiting = await runtime.waiting_runs()
                await asyncio.gather(*(decide(runtime, ledger, r.run_id, gate) for r in waiting))
                paused = [
                    r
                    for r in await store.list_runs(limit=None)
                    if r.status == "paused" and r.reason_code == "child_waiting"
                ]
                await asyncio.gather(*(go_on(runtime, r.run_id, gate) for r in paused))
                bosses = [r for r in await store.list_runs(limit=None) if r.agent == "boss"]
                if len(bosses) >= len(jobs) and all(r.status == "completed" for r in bosses):
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


async def go_on(runtime: Runtime, run_id: str, gate: asyncio.Semaphore) -> None:
    """Resume a parent whose children no longer wait for a person."""
    async with gate:
        children = await runtime.children(run_id)
        if any(c.status in ("awaiting_approval", "paused") for c in children):
            return
        try:
            await runtime.resume(run_id)
        except (RunLeasedError, UsageError):
            return  # another life's lease: next round


async def fanout_work(options: argparse.Namespace) -> None:
    ledger = Ledger(options.ledger)
    life = ledger.begin_life()
    lead = make_lead(ledger, kill_at="item-2" if life == 1 else None)
    store = open_journal(options.journal)
    try:
        async with Runtime(store=store, agents=[lead], prices=PRICES, lease_ttl_s=0.5) as runtime:
            if life == 1:
                await runtime.run(lead, "count everything")
                return
            # A later life: wait until the dead process's leases ran out, then recover.
            for _ in range(100):
                await runtime.recover()
                records = await store.list_runs(limit=None)
                lead_run = next(r for r in records if r.agent == "lead")
                if lead_run.status == "completed":
                    return
                await asyncio.sleep(0.1)
            raise SystemExit("the lead run did not complete")
    finally:
        await store.close()
        ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["kill", "fanout"])
    parser.add_argument("--journal", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--lease-ttl", type=float, default=0.6)
    options = parser.parse_args()
    asyncio.run(kill_work(options) if options.mode == "kill" else fanout_work(options))
    sys.exit(0)


if __name__ == "__main__":
    main()

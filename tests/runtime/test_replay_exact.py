"""Replay calls nothing, writes nothing and is exact, also for runs whose model calls were
retried, fell back to another model, or were answered from the response cache; and for runs
that went through the queue, checks and people's decisions. The whole store (every table of a
SQLite file) is compared before and after, and no lease is taken."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from keel import Agent, CheckRequest, CheckResult, KeelSettings, Limits, Runtime, check, tool
from keel.errors import ModelConnectionError, ModelHTTPError
from keel.messages import ModelRequest, ModelResponse, ModelSettings
from keel.ports import Model
from keel.resilience import Caching, Fallback, MemoryResponseCache, Retrying, RetryPolicy
from keel.stores import SQLiteStore
from keel.testing import FakeClock, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


class Unreliable(Model):
    """Fails with the scripted errors first, then answers from its script, then is down."""

    def __init__(self, name: str, failures: list[Exception], answers: list[Any]) -> None:
        self._name = name
        self._failures = list(failures)
        self._answers = ScriptedModel(answers, name=name)

    @property
    def name(self) -> str:
        return self._name

    async def request(self, request: ModelRequest) -> ModelResponse:
        if self._failures:
            raise self._failures.pop(0)
        if not self._answers.remaining:
            raise ModelHTTPError("down", status=503, model=self._name)
        return await self._answers.request(request)


@tool(idempotent=True, side_effects="read")
def lookup(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: shipped"


@tool(requires_approval=True)
def refund(order_id: str) -> str:
    """Refund."""
    return "refunded"


def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a SQLite file."""
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(conn.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}


async def test_replay_of_retries_fallbacks_cache_hits_checks_and_decisions_is_exact(
    tmp_path: Path,
) -> None:
    clock = FakeClock(tick=0.001)
    retry = RetryPolicy(max_attempts=3, initial_backoff_s=0.01)
    # Step 1: the primary fails once and is retried; later steps: it is down, and the backup
    # answers (a fallback).
    primary = Retrying(
        Unreliable(
            "acme:primary",
            [ModelConnectionError("reset", model="acme:primary")],
            [call("lookup", order_id="1")],
        ),
        retry,
        clock=clock,
        sleep=clock.sleep,
    )
    backup = Unreliable("acme:backup", [], [call("refund", order_id="1"), "Refunded."])
    cache = MemoryResponseCache(clock=clock)
    cached = Caching(ScriptedModel(["from the cache"], name="acme:cached"), cache)

    @check(points=["tool_call"])
    def look(request: CheckRequest) -> CheckResult:
        return CheckResult.allow()

    agent = Agent(
        name="desk",
        model=Fallback(primary, backup),
        tools=[lookup, refund],
        checks=[look],
        limits=Limits(max_steps=6),
    )
    db = tmp_path / "keel.db"
    store = SQLiteStore(db)
    runtime = Runtime(store=store, settings=NO_MODELS, clock=clock, agents=[agent])
    run_id = await runtime.submit(agent, "Refund order 1")
    await runtime.worker().run(until_idle=True)
    waiting = await runtime.result(run_id)
    assert waiting.status == "awaiting_approval"
    done = await runtime.approve(run_id, by="ana")
    assert done.status == "completed"
    # A second run answered from the cache (deterministic settings make it cacheable).
    deterministic = Agent(name="cached", model=cached, model_settings=ModelSettings(temperature=0))
    runtime.register(deterministic)
    await runtime.run(deterministic, "Hi")
    hit = await runtime.run(deterministic, "Hi")

    before = tables(db)
    for replayed_id, replayed_agent in ((run_id, agent), (hit.run_id, deterministic)):
        replayed = await runtime.replay(replayed_id, replayed_agent)
        assert replayed.identical, replayed.differences
    assert tables(db) == before  # nothing written, not even a lease
    leases = [r.lease_owner for r in await store.list_runs(limit=None)]
    assert leases == [None] * len(leases)
    await store.close()


async def test_replay_calls_no_model_and_no_tool(tmp_path: Path) -> None:
    calls: list[str] = []

    @tool(side_effects="read")
    def spy(order_id: str) -> str:
        """Record being called."""
        calls.append(order_id)
        return "seen"

    model = ScriptedModel([call("spy", order_id="9"), "ok"])
    agent = Agent(name="spy", model=model, tools=[spy])
    async with SQLiteStore(tmp_path / "keel.db") as store:
        runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])
        result = await runtime.run(agent, "Go")
        asked = len(model.requests)

        replayed = await runtime.replay(result.run_id)

    assert replayed.identical
    assert (calls, len(model.requests)) == (["9"], asked)

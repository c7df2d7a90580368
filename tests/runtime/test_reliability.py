"""Reliable model calls through the runtime: retries and fallbacks journaled attempt by
attempt, circuit breakers, output repair by switching models, the response cache, routing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from keel import Agent, KeelSettings, Limits, Model, ModelSettings, Runtime, tool
from keel._core.events import ModelResponded, ModelSwitched
from keel.models._openai import OpenAIModel
from keel.resilience import (
    BreakerPolicy,
    MemoryResponseCache,
    RetryPolicy,
    Route,
    Router,
    short_input,
)
from keel.testing import Fault, MemoryStore, OpenAICompatibleServer, ScriptedModel

FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.01)


@tool(idempotent=True, side_effects="read")
def lookup_order(order_id: str) -> str:
    """Find an order by id."""
    return f"order {order_id}: shipped"


@pytest.fixture
async def servers() -> AsyncIterator[tuple[OpenAICompatibleServer, OpenAICompatibleServer]]:
    async with (
        OpenAICompatibleServer(model="primary") as one,
        OpenAICompatibleServer(model="backup") as two,
    ):
        yield one, two


def runtime_for(*servers: OpenAICompatibleServer, **options: Any) -> Runtime:
    runtime = Runtime(
        store=MemoryStore(), settings=KeelSettings(openai_base_url="http://unused"), **options
    )
    for index, server in enumerate(servers):

        def factory(
            model: str, settings: KeelSettings, base: str = server.base_url, i: int = index
        ) -> Model:
            return OpenAIModel(model, base_url=base, provider=f"loop{i}")

        runtime.models.register(f"loop{index}", factory)
    return runtime


async def test_a_rate_limited_call_is_retried_and_every_attempt_is_journaled(
    servers: tuple[OpenAICompatibleServer, OpenAICompatibleServer],
) -> None:
    primary, _ = servers
    primary.add_fault(Fault.status(429, retry_after=0.01), Fault.status(500))
    primary.add_reply("Fine now.")
    agent = Agent(name="a", model="loop0:m")
    async with runtime_for(primary, retry=FAST) as runtime:
        result = await runtime.run(agent, "Hi")
        [answered] = [
            e for e in await runtime.store.load(result.run_id) if isinstance(e, ModelResponded)
        ]

    assert result.output == "Fine now."
    assert [a.code for a in answered.attempts] == ["model_rate_limited", "model_server_error", None]
    assert answered.attempts[1].waited_ms >= 10  # the Retry-After of the 429 was honoured
    assert answered.model == "loop0:m"
    assert len(primary.requests) == 3


async def test_a_dead_provider_opens_its_breaker_and_the_fallback_serves(
    servers: tuple[OpenAICompatibleServer, OpenAICompatibleServer],
) -> None:
    primary, backup = servers
    primary.add_fault(*[Fault.status(503)] * 20)
    for _ in range(3):
        backup.add_reply("Answered by the backup.")
    agent = Agent(name="a", model=["loop0:m", "loop1:m"])
    policy = BreakerPolicy(failure_threshold=2, cooldown_s=60)
    async with runtime_for(primary, backup, retry=FAST, breaker=policy) as runtime:
        results = [await runtime.run(agent, "Hi") for _ in range(3)]
        statuses = {s.name: s.state for s in await runtime.breaker_statuses()}
        last = [
            e for e in await runtime.store.load(results[-1].run_id) if isinstance(e, ModelResponded)
        ]

    assert [r.output for r in results] == ["Answered by the backup."] * 3
    assert statuses["loop0:m"] == "open"
    # The open breaker spared the dead provider: only the first run's retries reached it.
    assert len(primary.requests) == 2
    [answered] = last
    assert answered.model == "loop1:m"  # which model served is in the journal
    assert answered.attempts[0].skipped


class Verdict(BaseModel):
    approved: bool


async def test_a_model_that_keeps_answering_badly_hands_over_to_the_next_one() -> None:
    bad = ScriptedModel(["yes", "yes, approved"], name="bad")
    good = ScriptedModel(['{"approved": true}'], name="good")

    agent = Agent(
        name="judge", model=[bad, good], output_type=Verdict, limits=Limits(max_output_retries=1)
    )
    async with Runtime(store=MemoryStore()) as runtime:
        result = await runtime.run(agent, "Refund?")
        events = await runtime.store.load(result.run_id)

    assert result.output == Verdict(approved=True)
    [switched] = [e for e in events if isinstance(e, ModelSwitched)]
    assert (switched.model_index, switched.reason.code) == (1, "output_invalid")
    assert "did not match the required output schema" in str(good.requests[0].messages[-1])
    assert [e.model for e in events if isinstance(e, ModelResponded)] == ["bad", "bad", "good"]


async def test_identical_deterministic_requests_are_answered_from_the_cache(
    servers: tuple[OpenAICompatibleServer, OpenAICompatibleServer],
) -> None:
    primary, _ = servers
    primary.add_reply("Cached answer.")
    agent = Agent(name="a", model="loop0:m", model_settings=ModelSettings(temperature=0))
    cache = MemoryResponseCache()
    async with runtime_for(primary, cache=cache) as runtime:
        first = await runtime.run(agent, "Same question")
        second = await runtime.run(agent, "Same question")
        [answered] = [
            e for e in await runtime.store.load(second.run_id) if isinstance(e, ModelResponded)
        ]

    assert first.output == second.output == "Cached answer."
    assert len(primary.requests) == 1
    assert answered.cached
    assert answered.cost_usd == 0.0
    assert cache.stats.hits == 1


async def test_a_router_sends_short_requests_to_the_cheap_model_and_journals_why(
    servers: tuple[OpenAICompatibleServer, OpenAICompatibleServer],
) -> None:
    cheap, strong = servers
    cheap.add_reply("Short answer.")
    strong.add_reply("Long answer.")
    async with runtime_for(cheap, strong) as runtime:
        router = Router(
            [Route("short", short_input(max_tokens=50), runtime.model("loop0:mini"))],
            default=runtime.model("loop1:large"),
        )
        agent = Agent(name="a", model=router)
        short = await runtime.run(agent, "Hi")
        long = await runtime.run(agent, "Explain " + "in great detail " * 60)
        routes = [
            [
                (e.route, e.model)
                for e in await runtime.store.load(r.run_id)
                if isinstance(e, ModelResponded)
            ]
            for r in (short, long)
        ]

    assert (short.output, long.output) == ("Short answer.", "Long answer.")
    assert routes == [[("short", "loop0:mini")], [("default", "loop1:large")]]


async def test_breakers_are_shared_through_redis_and_listed_by_the_cli(
    servers: tuple[OpenAICompatibleServer, OpenAICompatibleServer], redis_url: str
) -> None:
    import asyncio
    import json
    import os
    import sys
    import uuid

    from keel.resilience import RedisBreakerBoard

    primary, backup = servers
    primary.add_fault(*[Fault.status(500)] * 10)
    backup.add_reply("Backup.")
    name = f"loop0:m-{uuid.uuid4().hex[:8]}"  # a breaker no other test shares
    policy = BreakerPolicy(failure_threshold=2, cooldown_s=60)
    settings = KeelSettings(openai_base_url="http://unused", redis_url=redis_url)
    runtime = Runtime(store=MemoryStore(), settings=settings, retry=FAST, breaker=policy)
    for index, server in enumerate((primary, backup)):

        def factory(
            model: str, s: KeelSettings, base: str = server.base_url, i: int = index
        ) -> Model:
            return OpenAIModel(model, base_url=base, provider=f"loop{i}")

        runtime.models.register(f"loop{index}", factory)
    async with runtime:
        assert isinstance(runtime.breakers, RedisBreakerBoard)
        await runtime.run(Agent(name="a", model=[name, "loop1:m"]), "Hi")
        try:
            listed = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "keel", "breakers", "list", "--json", "--db", "memory"),
                env={**os.environ, "KEEL_REDIS_URL": redis_url},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await listed.communicate()
            assert listed.returncode == 0, err.decode()
            states = {b["name"]: b["state"] for b in json.loads(out)}
            assert states[name] == "open"  # another process sees this one's breaker
            reset = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "keel", "breakers", "reset", name, "--db", "memory"),
                env={**os.environ, "KEEL_REDIS_URL": redis_url},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await reset.communicate()
            assert reset.returncode == 0, err.decode()
            assert (await runtime.breakers.status(name)).state == "closed"
        finally:
            await runtime.breakers.reset(name)


@pytest.mark.parametrize("command", [["list"], ["reset", "openai:gpt-4o"]])
def test_the_cli_says_breakers_need_redis_to_be_seen_or_reset(
    monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    from typer.testing import CliRunner

    from keel._cli.main import app

    monkeypatch.delenv("KEEL_REDIS_URL", raising=False)
    done = CliRunner().invoke(app, ["breakers", *command, "--db", "memory"])
    assert done.exit_code == 2
    assert "set KEEL_REDIS_URL" in done.output
    assert "closed" not in done.output  # no claim that a breaker nobody shares was reset

"""Rate limits around model calls: a call with no room waits (bounded) or pauses the run,
naming the bucket; a resume later continues it; a provider's 429 empties the model's bucket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keel import Agent, KeelSettings, Runtime
from keel.errors import ModelHTTPError
from keel.messages import ModelRequest, ModelResponse
from keel.resilience import LocalRateLimiter, RateLimit
from keel.testing import FakeClock, FunctionModel, MemoryStore, ScriptedModel

NO_MODELS = KeelSettings.from_environ({})


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


async def test_a_call_with_no_room_pauses_the_run_and_a_resume_later_continues(
    store: MemoryStore,
) -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    limit = RateLimit(requests_per_minute=1, scope="tenant", on_limit="pause")
    runtime = Runtime(
        store=store, settings=NO_MODELS, clock=clock, rate_limits=[limit], rate_limiter=limiter
    )
    agent = Agent(name="desk", model=ScriptedModel(["one", "two", "three"]))

    first = await runtime.run(agent, "1", tenant="acme")
    second = await runtime.run(agent, "2", tenant="acme")
    other = await runtime.run(agent, "3", tenant="globex")

    assert (first.status, second.status, other.status) == ("completed", "paused", "completed")
    assert second.reason is not None
    assert second.reason.code == "rate_limited"
    assert "tenant:acme" in second.reason.message

    clock.advance(60)
    done = await runtime.resume(second.run_id, agent)
    assert done.status == "completed"


async def test_a_limited_call_waits_for_room_within_its_bound(store: MemoryStore) -> None:
    clock = FakeClock()
    limit = RateLimit(requests_per_minute=60, scope="agent", max_wait_s=5.0)
    runtime = Runtime(
        store=store,
        settings=NO_MODELS,
        clock=clock,
        rate_limits=[limit],
        rate_limiter=LocalRateLimiter(clock=clock),
    )
    agent = Agent(name="desk", model=ScriptedModel(["a"] * 70))

    results = [await runtime.run(agent, str(n)) for n in range(70)]

    assert {r.status for r in results} == {"completed"}
    assert clock.monotonic() >= 9.0  # ten calls past the burst waited a second each


async def test_a_providers_429_empties_the_models_bucket_for_other_runs(
    store: MemoryStore,
) -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    limit = RateLimit(requests_per_minute=100, scope="model", on_limit="pause")

    def busy(request: ModelRequest) -> ModelResponse:
        raise ModelHTTPError("slow down", status=429, model="acme:small", retry_after=30.0)

    runtime = Runtime(
        store=store,
        settings=NO_MODELS,
        clock=clock,
        rate_limits=[limit],
        rate_limiter=limiter,
        retry=None,
    )
    refused = await runtime.run(Agent(name="a", model=FunctionModel(busy, name="acme:small")), "x")
    assert refused.status == "paused"

    after = await runtime.run(Agent(name="b", model=ScriptedModel(["hi"], name="acme:small")), "y")
    assert after.status == "paused"
    assert after.reason is not None
    assert after.reason.code == "rate_limited"
    assert "model:acme:small" in after.reason.message

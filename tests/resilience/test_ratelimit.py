"""Token-bucket arithmetic on a fake clock: bursts, continuous refill, tokens, adjustments,
penalties, refusals over capacity, and bounded waits (LocalRateLimiter)."""

from __future__ import annotations

import math

import pytest

from keel.errors import ConfigurationError
from keel.resilience import Acquisition, LocalRateLimiter, RateLimit
from keel.testing import FakeClock

BUCKET = "model:openai:gpt-4o"
PAUSE_30 = RateLimit(requests_per_minute=30, on_limit="pause")


def limiter() -> tuple[LocalRateLimiter, FakeClock]:
    clock = FakeClock()
    return LocalRateLimiter(clock=clock), clock


async def grants(limiter: LocalRateLimiter, limit: RateLimit, count: int, **kw: int) -> int:
    results = [await limiter.acquire(BUCKET, limit, **kw) for _ in range(count)]
    return sum(r.granted for r in results)


async def test_a_full_bucket_lets_a_burst_of_its_capacity_through_then_refuses() -> None:
    rl, clock = limiter()
    assert await grants(rl, PAUSE_30, 30) == 30
    refused = await rl.acquire(BUCKET, PAUSE_30)
    assert refused == Acquisition(
        granted=False, bucket=BUCKET, retry_after_s=2.0, reason="it has room again in 2s"
    )
    assert clock.slept == 0


async def test_the_bucket_refills_continuously_and_never_above_its_capacity() -> None:
    rl, clock = limiter()
    await grants(rl, PAUSE_30, 30)
    clock.advance(1.0)  # half a request
    assert (await rl.acquire(BUCKET, PAUSE_30)).retry_after_s == pytest.approx(1.0)
    clock.advance(1.0)
    assert await grants(rl, PAUSE_30, 2) == 1
    clock.advance(3600)
    assert await grants(rl, PAUSE_30, 40) == 30


async def test_tokens_are_counted_with_the_request() -> None:
    rl, _ = limiter()
    limit = RateLimit(tokens_per_minute=1000, on_limit="pause")
    assert (await rl.acquire(BUCKET, limit, tokens=600)).granted
    refused = await rl.acquire(BUCKET, limit, tokens=600)
    # 200 tokens short at 1000 a minute.
    assert not refused.granted
    assert refused.retry_after_s == pytest.approx(12.0)
    assert (await rl.acquire(BUCKET, limit, tokens=400)).granted
    assert rl.levels(BUCKET, limit)[1] == pytest.approx(0.0)


async def test_a_limit_on_both_waits_for_the_scarcer_of_requests_and_tokens() -> None:
    rl, _ = limiter()
    limit = RateLimit(requests_per_minute=60, tokens_per_minute=600, on_limit="pause")
    assert (await rl.acquire(BUCKET, limit, tokens=600)).granted
    refused = await rl.acquire(BUCKET, limit, tokens=300)
    assert refused.retry_after_s == pytest.approx(30.0)  # requests would allow it at once


async def test_adjust_gives_tokens_back_or_takes_more_into_debt() -> None:
    rl, _ = limiter()
    limit = RateLimit(tokens_per_minute=1000, on_limit="pause")
    await rl.acquire(BUCKET, limit, tokens=800)
    await rl.adjust(BUCKET, limit, tokens=-500)  # the call used 300, not 800
    assert rl.levels(BUCKET, limit)[1] == pytest.approx(700.0)
    await rl.adjust(BUCKET, limit, tokens=900)  # ... then a call used 900 more than estimated
    assert rl.levels(BUCKET, limit)[1] == pytest.approx(-200.0)
    refused = await rl.acquire(BUCKET, limit, tokens=100)
    assert refused.retry_after_s == pytest.approx(18.0)  # 300 short at 1000/min


async def test_giving_back_never_fills_a_bucket_above_its_capacity() -> None:
    rl, _ = limiter()
    limit = RateLimit(requests_per_minute=10, tokens_per_minute=1000, on_limit="pause")
    await rl.acquire(BUCKET, limit, tokens=100)
    await rl.adjust(BUCKET, limit, tokens=-5000, requests=-3)
    assert rl.levels(BUCKET, limit) == (10.0, 1000.0)


async def test_penalize_empties_the_bucket_until_then_and_it_refills_from_empty() -> None:
    rl, clock = limiter()
    limit = RateLimit(requests_per_minute=60, on_limit="pause")
    assert (await rl.acquire(BUCKET, limit)).granted
    await rl.penalize(BUCKET, 10.0)
    assert (await rl.acquire(BUCKET, limit)).retry_after_s == pytest.approx(11.0)
    clock.advance(10.0)
    assert (await rl.acquire(BUCKET, limit)).retry_after_s == pytest.approx(1.0)
    clock.advance(1.0)
    assert (await rl.acquire(BUCKET, limit)).granted
    assert not (await rl.acquire(BUCKET, limit)).granted


async def test_a_shorter_penalty_does_not_shorten_a_longer_one() -> None:
    rl, _ = limiter()
    limit = RateLimit(requests_per_minute=60, on_limit="pause")
    await rl.penalize(BUCKET, 30.0)
    await rl.penalize(BUCKET, 5.0)
    await rl.penalize(BUCKET, math.nan)  # a garbled hint counts as none
    assert (await rl.acquire(BUCKET, limit)).retry_after_s == pytest.approx(31.0)


async def test_a_request_larger_than_the_bucket_is_refused_at_once_with_the_reason() -> None:
    rl, clock = limiter()
    limit = RateLimit(tokens_per_minute=1000, max_wait_s=600)
    refused = await rl.acquire(BUCKET, limit, tokens=1001)
    assert (refused.granted, refused.retry_after_s) == (False, None)
    assert "needs 1001 tokens but the bucket holds at most 1000" in refused.reason
    assert clock.slept == 0
    assert rl.levels(BUCKET, limit) == (0.0, 1000.0)  # nothing was taken


async def test_wait_sleeps_on_the_clock_until_there_is_room() -> None:
    rl, clock = limiter()
    limit = RateLimit(requests_per_minute=60, max_wait_s=5.0)
    await grants(rl, limit, 60)
    granted = await rl.acquire(BUCKET, limit)
    assert (granted.granted, granted.waited_s, clock.slept) == (True, 1.0, 1.0)


async def test_a_wait_longer_than_max_wait_is_not_started() -> None:
    rl, clock = limiter()
    limit = RateLimit(requests_per_minute=6, max_wait_s=5.0)
    await grants(rl, limit, 6)
    refused = await rl.acquire(BUCKET, limit)
    assert (refused.granted, refused.retry_after_s, clock.slept) == (False, 10.0, 0)
    assert "past max_wait_s=5" in refused.reason


class RivalClock(FakeClock):
    """A fake clock during whose sleeps another caller takes the room that refilled."""

    def __init__(self, rival_turns: int) -> None:
        super().__init__()
        self.rival_turns = rival_turns
        self.limiter: LocalRateLimiter | None = None

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        if self.rival_turns and self.limiter is not None:
            self.rival_turns -= 1
            taken = await self.limiter.acquire(BUCKET, RateLimit(requests_per_minute=60))
            assert taken.granted


@pytest.mark.parametrize(("rival_turns", "granted", "waited"), [(1, True, 2.0), (2, False, 2.0)])
async def test_a_waiter_that_loses_the_room_waits_again_within_its_bound(
    rival_turns: int, granted: bool, waited: float
) -> None:
    clock = RivalClock(rival_turns)
    rl = clock.limiter = LocalRateLimiter(clock=clock)
    limit = RateLimit(requests_per_minute=60, max_wait_s=2.5)
    await grants(rl, limit, 60)
    result = await rl.acquire(BUCKET, limit)
    assert (result.granted, result.waited_s) == (granted, waited)
    assert result.retry_after_s == (None if granted else 1.0)


async def test_buckets_are_independent() -> None:
    rl, _ = limiter()
    assert await grants(rl, PAUSE_30, 30) == 30
    assert (await rl.acquire("model:anthropic:claude", PAUSE_30)).granted


async def test_full_buckets_are_forgotten() -> None:
    rl, clock = limiter()
    rl._SWEEP_EVERY = 2
    await rl.acquire("tenant:a", PAUSE_30)
    clock.advance(60)
    await rl.acquire("tenant:b", PAUSE_30)  # the second operation sweeps
    assert repr(rl) == "LocalRateLimiter(buckets=1)"


async def test_negative_tokens_are_refused() -> None:
    rl, _ = limiter()
    with pytest.raises(ConfigurationError, match="tokens must be an int of 0 or more"):
        await rl.acquire(BUCKET, PAUSE_30, tokens=-1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs requests_per_minute or tokens_per_minute"),
        ({"requests_per_minute": 0}, "requests_per_minute must be an int of at least 1"),
        ({"tokens_per_minute": 1.5}, "tokens_per_minute must be an int of at least 1"),
        ({"requests_per_minute": 1, "scope": "user"}, "scope must be one of model, agent"),
        ({"requests_per_minute": 1, "key": ""}, "key must be a non-empty name"),
        ({"requests_per_minute": 1, "max_wait_s": -1}, "max_wait_s must be a finite number"),
        ({"requests_per_minute": 1, "max_wait_s": math.inf}, "max_wait_s must be a finite"),
        ({"requests_per_minute": 1, "on_limit": "fail"}, "on_limit must be 'wait' or 'pause'"),
    ],
)
def test_bad_limits_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RateLimit(**options)  # type: ignore[arg-type]


def test_bucket_names_follow_the_scope_and_the_key() -> None:
    every_model = RateLimit(requests_per_minute=1)
    one_tenant = RateLimit(requests_per_minute=1, scope="tenant", key="acme")
    assert every_model.bucket_for("openai:gpt-4o") == "model:openai:gpt-4o"
    assert one_tenant.bucket_for("acme") == "tenant:acme"
    assert one_tenant.bucket_for("globex") is None

"""What the Redis limiter does: the same arithmetic as the local one, one bucket shared by
processes (two OS processes here), the server's clock, expiring keys, and failing open."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import redis
from keel.errors import ConfigurationError, MissingExtraError
from keel.resilience import LocalRateLimiter, RateLimit, RateLimiter, RedisRateLimiter
from keel.testing import FakeClock
from tests.redis import delete_prefix, require_redis

WORKER = Path(__file__).with_name("ratelimit_worker.py")
ROOT = Path(__file__).resolve().parents[2]
BUCKET = "model:openai:gpt-shared"
T0 = 1_700_000_000.0


@pytest.fixture
def url() -> str:
    return require_redis()


@pytest.fixture
async def prefix(url: str) -> AsyncIterator[str]:
    value = f"keel:test:rl:{uuid.uuid4().hex}:"
    yield value
    await delete_prefix(url, value)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def scenario(limiter: RateLimiter, clock: FakeClock) -> list[object]:
    """A run through bursts, refill, tokens, adjustments and penalties; what each step saw."""
    both = RateLimit(requests_per_minute=6, tokens_per_minute=600, on_limit="pause")
    seen: list[object] = []

    async def take(tokens: int = 0) -> None:
        got = await limiter.acquire(BUCKET, both, tokens=tokens)
        retry = got.retry_after_s
        seen.append(got.granted if retry is None else round(retry, 3))

    for _ in range(7):
        await take()
    clock.advance(5.0)
    await take()  # half a request refilled: 5 s more
    clock.advance(5.0)
    await take(50)
    await take(700)  # larger than the bucket
    await limiter.adjust(BUCKET, both, tokens=600)  # the call used 600 more: debt
    clock.advance(60.0)
    await take(100)  # 600 - 50 - 600 + 600 refilled = 550
    await take(500)  # 50 short
    await limiter.penalize(BUCKET, 30.0)
    await take()
    clock.advance(30.0)
    await take()
    clock.advance(10.0)
    await take(90)
    return seen


EXPECTED = [True] * 6 + [10.0, 5.0, True, False, True, 5.0, 40.0, 10.0, True]


async def test_the_redis_limiter_does_the_same_arithmetic_as_the_local_one(
    url: str, prefix: str
) -> None:
    local_clock, redis_clock = FakeClock(T0), FakeClock(T0)
    local = await scenario(LocalRateLimiter(clock=local_clock), local_clock)
    limiter = RedisRateLimiter(url, prefix=prefix, clock=redis_clock)
    try:
        shared = await scenario(limiter, redis_clock)
    finally:
        await limiter.aclose()
    assert local == EXPECTED
    assert shared == EXPECTED


def spawn(url: str, prefix: str, *args: str) -> asyncio.Future[tuple[bytes, bytes]]:
    async def run() -> tuple[bytes, bytes]:
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            url,
            prefix,
            BUCKET,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
        )
        out, err = await asyncio.wait_for(worker.communicate(), timeout=30)
        assert worker.returncode == 0, err.decode()
        return out, err

    return asyncio.ensure_future(run())


def report(out: bytes) -> dict[str, int]:
    found: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])
    assert found["pid"] != os.getpid()
    return found


async def test_two_processes_share_one_bucket_on_a_fixed_clock(url: str, prefix: str) -> None:
    runs = [spawn(url, prefix, "acquire", "40", repr(T0)) for _ in range(2)]
    reports = [report(out) for out, _ in await asyncio.gather(*runs)]
    assert reports[0]["pid"] != reports[1]["pid"]
    assert sum(r["granted"] for r in reports) == 30


async def test_two_processes_share_one_bucket_on_the_server_clock(url: str, prefix: str) -> None:
    started = time.monotonic()
    runs = [spawn(url, prefix, "acquire", "40", "server") for _ in range(2)]
    reports = [report(out) for out, _ in await asyncio.gather(*runs)]
    elapsed = time.monotonic() - started
    granted = sum(r["granted"] for r in reports)
    # The burst of 30, plus at most what refilled (one request every 2 s) while they ran.
    assert 30 <= granted <= 30 + math.floor(elapsed / 2.0)


async def test_a_penalty_from_another_process_holds_this_one_back(url: str, prefix: str) -> None:
    out, _ = await spawn(url, prefix, "penalize", "3600", "server")
    report(out)
    limiter = RedisRateLimiter(url, prefix=prefix)
    try:
        refused = await limiter.acquire(BUCKET, RateLimit(requests_per_minute=30, max_wait_s=60))
    finally:
        await limiter.aclose()
    # An hour's penalty plus one request's refill, less the little time since it was set.
    assert not refused.granted
    assert refused.retry_after_s is not None
    assert 3600 - 60 < refused.retry_after_s <= 3602


async def test_a_penalty_on_a_fixed_clock_is_exact(url: str, prefix: str) -> None:
    out, _ = await spawn(url, prefix, "penalize", "120", repr(T0))
    report(out)
    limiter = RedisRateLimiter(url, prefix=prefix, clock=FakeClock(T0))
    try:
        refused = await limiter.acquire(BUCKET, RateLimit(requests_per_minute=30, on_limit="pause"))
    finally:
        await limiter.aclose()
    assert refused.retry_after_s == pytest.approx(122.0)


async def test_concurrent_callers_on_many_clients_get_exactly_the_capacity(
    url: str, prefix: str
) -> None:
    limiters = [RedisRateLimiter(url, prefix=prefix, clock=FakeClock(T0)) for _ in range(4)]
    limit = RateLimit(requests_per_minute=25, on_limit="pause")
    try:
        results = await asyncio.gather(*(limiters[i % 4].acquire(BUCKET, limit) for i in range(60)))
    finally:
        for limiter in limiters:
            await limiter.aclose()
    assert sum(r.granted for r in results) == 25


async def test_refill_is_judged_by_the_server_clock(url: str, prefix: str) -> None:
    limiter = RedisRateLimiter(url, prefix=prefix)
    client = aioredis.Redis.from_url(url)
    limit = RateLimit(requests_per_minute=2, on_limit="pause")
    try:
        granted = [await limiter.acquire(BUCKET, limit) for _ in range(3)]
        levels = await limiter.levels(BUCKET)
        seconds, micros = await client.time()
    finally:
        await client.aclose()
        await limiter.aclose()
    assert [g.granted for g in granted] == [True, True, False]
    assert granted[2].retry_after_s is not None
    assert 0 < granted[2].retry_after_s <= 30.0  # one request every 30 s
    assert levels is not None
    assert abs(levels[2] - (seconds + micros / 1e6)) < 5.0


async def test_keys_expire_when_the_bucket_would_be_full_again(url: str, prefix: str) -> None:
    clock = FakeClock(T0)
    limiter = RedisRateLimiter(url, prefix=prefix, clock=clock)
    client = aioredis.Redis.from_url(url)
    limit = RateLimit(requests_per_minute=60, on_limit="pause")
    try:
        assert await limiter.levels(BUCKET) is None
        await limiter.acquire(BUCKET, limit)
        # Full again in 1 s; the key lives one second more.
        assert 1000 < await client.pttl(prefix + BUCKET) <= 2000
        assert await limiter.levels(BUCKET) == (59.0, 0.0, T0)
        await limiter.penalize(BUCKET, 10.0)
        assert 60_000 < await client.pttl(prefix + BUCKET) <= 71_000
    finally:
        await client.aclose()
        await limiter.aclose()


async def test_a_client_passed_in_is_left_open(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        limiter = RedisRateLimiter(client, prefix=prefix)
        assert (limiter.prefix, repr(limiter)) == (prefix, f"RedisRateLimiter(prefix={prefix!r})")
        assert (await limiter.acquire(BUCKET, RateLimit(requests_per_minute=1))).granted
        await limiter.aclose()
        assert await client.ping()
    finally:
        await client.aclose()


async def test_without_redis_calls_go_ahead_and_a_warning_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{closed_port()}/0")
    limit = RateLimit(requests_per_minute=1)
    try:
        with caplog.at_level(logging.WARNING, logger="keel.resilience"):
            granted = await limiter.acquire(BUCKET, limit)
            await limiter.adjust(BUCKET, limit, tokens=10)
            await limiter.penalize(BUCKET, 5.0)
    finally:
        await limiter.aclose()
    assert granted.granted
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert all(f"rate limit bucket '{BUCKET}': Redis could not be reached" in m for m in messages)


async def test_without_redis_a_limiter_that_fails_closed_raises() -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{closed_port()}/0", fail_open=False)
    try:
        with pytest.raises(redis.ConnectionError):
            await limiter.acquire(BUCKET, RateLimit(requests_per_minute=1))
        with pytest.raises(redis.ConnectionError):
            await limiter.penalize(BUCKET, 1.0)
    finally:
        await limiter.aclose()


def test_without_the_redis_package_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'keel-runtime\[redis\]'"):
        RedisRateLimiter("redis://127.0.0.1:6379/0")


def test_an_empty_prefix_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="prefix must not be empty"):
        RedisRateLimiter("redis://127.0.0.1:6379/0", prefix="")

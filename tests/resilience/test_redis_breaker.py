"""What only the Redis board does: share one breaker between processes, judge time by the
server's clock, stay atomic under concurrency, expire idle keys, and fail open without Redis.
(The transitions themselves are in the contract suite of test_breaker.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import redis
from keel.errors import CircuitOpenError, MissingExtraError
from keel.resilience import BreakerPolicy, CircuitBreaker, RedisBreakerBoard
from keel.testing._clock import FakeClock
from tests.redis import delete_prefix, require_redis
from tests.resilience._resilience import (
    HELLO,
    Flaky,
    unique_prefix,
)

WORKER = Path(__file__).with_name("breaker_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url() -> str:
    return require_redis()


@pytest.fixture
async def prefix(url: str) -> AsyncIterator[str]:
    value = unique_prefix()
    yield value
    await delete_prefix(url, value)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_failures_in_another_process_open_the_breaker_here(url: str, prefix: str) -> None:
    name = "openai:gpt-shared"
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        url,
        prefix,
        name,
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, err = await asyncio.wait_for(worker.communicate(), timeout=30)
    assert worker.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["pid"] != os.getpid()
    assert (report["calls"], report["refused"], report["state"]) == (3, True, "open")

    board = RedisBreakerBoard(
        url, BreakerPolicy(failure_threshold=3, cooldown_s=60.0), prefix=prefix
    )
    model = Flaky(["never called"], name=name)
    try:
        with pytest.raises(CircuitOpenError) as caught:
            await CircuitBreaker(model, board).request(HELLO)
        status = await board.status(name)
    finally:
        await board.close()

    assert model.calls == 0
    assert 0 < caught.value.retry_in_s <= 60.0
    assert caught.value.attempts[0].skipped
    assert (status.state, status.consecutive_failures) == ("open", 3)


async def test_times_come_from_the_redis_server_clock(url: str, prefix: str) -> None:
    board = RedisBreakerBoard(
        url, BreakerPolicy(failure_threshold=1, cooldown_s=45.0), prefix=prefix
    )
    try:
        await board.record("m", False)
        status = await board.status("m")
        client = aioredis.Redis.from_url(url)
        try:
            seconds, micros = await client.time()
        finally:
            await client.aclose()
    finally:
        await board.close()

    assert status.opened_at is not None
    assert status.retry_at is not None
    assert abs(status.opened_at - (seconds + micros / 1e6)) < 5.0
    assert abs(status.opened_at - time.time()) < 60.0  # the same machine here
    assert status.retry_at - status.opened_at == pytest.approx(45.0)


async def test_concurrent_callers_on_many_clients_get_exactly_the_trial_slots(
    url: str, prefix: str
) -> None:
    clock = FakeClock()
    policy = BreakerPolicy(failure_threshold=1, cooldown_s=10.0, half_open_max_calls=2)
    boards = [RedisBreakerBoard(url, policy, prefix=prefix, clock=clock) for _ in range(4)]
    try:
        await boards[0].record("m", False)
        clock.advance(10.0)

        async def try_call(board: RedisBreakerBoard) -> bool:
            try:
                await board.before_call("m")
            except CircuitOpenError:
                return False
            return True

        admitted = await asyncio.gather(*(try_call(boards[i % 4]) for i in range(40)))
        assert sum(admitted) == 2
    finally:
        for board in boards:
            await board.close()


async def test_concurrent_failures_are_all_counted(url: str, prefix: str) -> None:
    policy = BreakerPolicy(failure_threshold=1000)
    boards = [RedisBreakerBoard(url, policy, prefix=prefix) for _ in range(3)]
    try:
        await asyncio.gather(*(boards[i % 3].record("m", False) for i in range(60)))
        assert (await boards[0].status("m")).consecutive_failures == 60
    finally:
        for board in boards:
            await board.close()


async def test_keys_expire_when_idle_and_vanish_when_there_is_nothing_to_keep(
    url: str, prefix: str
) -> None:
    board = RedisBreakerBoard(url, BreakerPolicy(), prefix=prefix, idle_ttl_s=90.0)
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await board.record("m", False)
        assert 0 < await client.pttl(prefix + "m") <= 90_000
        assert await client.hgetall(prefix + "m") == {
            "failures": "1",
            "window": "1",
            "state": "closed",
        }
        await board.record("m", True)
        assert await client.exists(prefix + "m") == 0
    finally:
        await client.aclose()
        await board.close()


async def test_statuses_lists_only_this_boards_prefix(url: str, prefix: str) -> None:
    policy = BreakerPolicy(failure_threshold=1)
    globby = RedisBreakerBoard(url, policy, prefix=prefix + "a*:")
    other = RedisBreakerBoard(url, policy, prefix=prefix + "ab:")
    try:
        await globby.record("one", False)
        await other.record("two", False)
        assert [s.name for s in await globby.statuses()] == ["one"]
        assert [s.name for s in await other.statuses()] == ["two"]
        await globby.reset("one")
        assert await globby.statuses() == []
    finally:
        await globby.close()
        await other.close()


async def test_a_client_passed_in_is_left_open(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        board = RedisBreakerBoard(client, BreakerPolicy(failure_threshold=1), prefix=prefix)
        assert board.prefix == prefix
        assert "RedisBreakerBoard(" in repr(board)
        await board.record("m", False)
        assert (await board.status("m")).state == "open"  # decoded replies work too
        await board.close()
        assert await client.ping()
    finally:
        await client.aclose()


async def test_without_redis_calls_go_ahead_and_a_warning_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = RedisBreakerBoard(
        f"redis://127.0.0.1:{closed_port()}/0", BreakerPolicy(failure_threshold=1)
    )
    model = Flaky(["served anyway"], name="m")
    try:
        with caplog.at_level(logging.WARNING, logger="keel.resilience"):
            response = await CircuitBreaker(model, board).request(HELLO)
            await board.release("m")
    finally:
        await board.close()
    assert response.message.content == "served anyway"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert all("circuit breaker 'm': Redis could not be reached" in m for m in messages)


async def test_without_redis_a_board_that_fails_closed_raises() -> None:
    board = RedisBreakerBoard(
        f"redis://127.0.0.1:{closed_port()}/0", BreakerPolicy(), fail_open=False
    )
    try:
        with pytest.raises(redis.ConnectionError):
            await board.before_call("m")
        with pytest.raises(redis.ConnectionError):
            await board.record("m", False)
    finally:
        await board.close()


def test_without_the_redis_package_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'keel-runtime\[redis\]'") as caught:
        RedisBreakerBoard("redis://127.0.0.1:6379/0")
    assert caught.value.package == "redis"
    assert "Circuit breakers shared through Redis" in caught.value.message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": ""}, "prefix must not be empty"),
        ({"idle_ttl_s": 0.5}, "idle_ttl_s must be a finite number of at least 1"),
        ({"idle_ttl_s": float("inf")}, "idle_ttl_s must be a finite number"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisBreakerBoard("redis://127.0.0.1:6379/0", **options)  # type: ignore[arg-type]

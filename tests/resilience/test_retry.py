"""Retrying on fake time: backoff with full jitter, Retry-After, time limits, the deadline, and
what it reports. No test sleeps: the injected sleep advances a FakeClock and records waits."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from keel._core.messages import Attempt, StreamComplete, StreamEvent, TextDelta
from keel.errors import (
    CircuitOpenError,
    ModelConnectionError,
    ModelError,
    ModelResponseError,
    ModelTimeoutError,
)
from keel.resilience import Fallback, Retrying, RetryPolicy
from keel.resilience._attempts import time_limit
from tests.resilience._resilience import (
    HELLO,
    Empty,
    FakeTime,
    Flaky,
    Hang,
    MidStream,
    Slow,
    TopRandom,
    answer,
    collect_into,
    http_error,
    non_retryable,
)


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


def retrying(
    model: Flaky | Fallback, time: FakeTime, rng: random.Random | None = None, **policy: Any
) -> Retrying:
    return Retrying(
        model,
        RetryPolicy(**policy),
        clock=time.clock,
        sleep=time.sleep,
        rng=rng if rng is not None else random.Random(7),
    )


def codes(attempts: tuple[Attempt, ...]) -> list[str | None]:
    return [attempt.code for attempt in attempts]


# -- the policy --------------------------------------------------------------------------------


def test_policy_defaults_are_finite() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.initial_backoff_s, policy.max_backoff_s) == (4, 0.5, 20.0)
    assert (policy.multiplier, policy.attempt_timeout_s, policy.deadline_s) == (2.0, None, 120.0)
    assert policy.max_retry_after_s == 60.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_attempts", 0, "max_attempts must be an int of at least 1"),
        ("max_attempts", 2.5, "max_attempts must be an int"),
        ("max_attempts", True, "max_attempts must be an int"),
        ("initial_backoff_s", -1.0, "initial_backoff_s must be a finite number 0 or more"),
        ("max_backoff_s", float("inf"), "max_backoff_s must be a finite number"),
        ("max_backoff_s", 0.1, r"max_backoff_s \(0.1\) must be at least initial_backoff_s"),
        ("multiplier", 0.5, "multiplier must be at least 1"),
        ("multiplier", float("nan"), "multiplier must be a finite number"),
        ("attempt_timeout_s", 0.0, "attempt_timeout_s must be a finite number greater than 0"),
        ("deadline_s", 0.0, "deadline_s must be a finite number greater than 0"),
        ("deadline_s", "60", "deadline_s must be a number"),
        ("max_retry_after_s", -5.0, "max_retry_after_s must be a finite number 0 or more"),
    ],
)
def test_policy_rejects_bad_values(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**{field: value})


def test_backoff_cap_grows_exponentially_up_to_the_maximum() -> None:
    policy = RetryPolicy()
    assert [policy.backoff_cap(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0]
    assert policy.backoff_cap(100_000) == 20.0  # no OverflowError


# -- backoff -----------------------------------------------------------------------------------


async def test_full_jitter_draws_each_wait_uniformly_below_its_cap(time: FakeTime) -> None:
    model = Flaky([http_error(500)] * 5 + ["ok"])
    response = await retrying(model, time, random.Random(42), max_attempts=6).request(HELLO)

    expected = random.Random(42)
    policy = RetryPolicy()
    assert time.sleeps == [expected.uniform(0, policy.backoff_cap(n)) for n in range(5)]
    assert all(0 <= wait <= policy.backoff_cap(n) for n, wait in enumerate(time.sleeps))
    assert response.message.content == "ok"
    assert model.calls == 6


async def test_waits_reach_their_caps_and_stop_growing(time: FakeTime) -> None:
    model = Flaky([http_error(503)] * 7 + ["ok"])
    await retrying(model, time, TopRandom(), max_attempts=8, max_backoff_s=5.0).request(HELLO)
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_full_jitter_spans_the_whole_range() -> None:
    rng = random.Random(1)
    draws = [rng.uniform(0, RetryPolicy().backoff_cap(3)) for _ in range(2000)]
    assert min(draws) < 0.2
    assert max(draws) > 3.8
    assert all(0 <= d <= 4.0 for d in draws)


async def test_gives_up_after_max_attempts_raising_the_last_error(time: FakeTime) -> None:
    last = http_error(502)
    model = Flaky([http_error(500), ModelConnectionError("reset"), last])
    with pytest.raises(ModelError) as caught:
        await retrying(model, time, max_attempts=3).request(HELLO)

    assert caught.value is last
    assert caught.value.code == "model_server_error"
    assert codes(caught.value.attempts) == [
        "model_server_error",
        "model_connection_error",
        "model_server_error",
    ]
    assert len(time.sleeps) == 2
    assert model.calls == 3


# -- Retry-After -------------------------------------------------------------------------------


async def test_retry_after_is_waited_when_longer_than_the_jitter(time: FakeTime) -> None:
    model = Flaky([http_error(429, retry_after=7.0), "ok"])
    response = await retrying(model, time).request(HELLO)

    assert time.sleeps == [7.0]  # the cap of the first jitter is 0.5
    assert [a.waited_ms for a in response.attempts] == [0.0, 7000.0]


async def test_a_short_retry_after_is_a_floor_under_the_jitter(time: FakeTime) -> None:
    model = Flaky([http_error(503, retry_after=0.001), "ok"])
    await retrying(model, time, TopRandom()).request(HELLO)
    assert time.sleeps == [0.5]


async def test_retry_after_beyond_the_cap_gives_up_at_once(time: FakeTime) -> None:
    error = http_error(429, retry_after=61.0)
    model = Flaky([error, "never"])
    with pytest.raises(ModelError) as caught:
        await retrying(model, time).request(HELLO)

    assert caught.value is error
    assert time.sleeps == []
    assert model.calls == 1
    assert codes(caught.value.attempts) == ["model_rate_limited"]


async def test_retry_after_at_the_cap_is_waited(time: FakeTime) -> None:
    model = Flaky([http_error(429, retry_after=60.0), "ok"])
    await retrying(model, time).request(HELLO)
    assert time.sleeps == [60.0]


# -- what is retried ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        http_error(400),
        http_error(401),
        http_error(403),
        http_error(404),
        non_retryable("model_context_window"),
        non_retryable("model_content_policy"),
        ModelResponseError("filtered", retryable=False),
        CircuitOpenError("flaky", retry_in_s=12.0),
    ],
    ids=lambda e: e.code,
)
async def test_errors_that_would_fail_again_are_not_retried(
    time: FakeTime, error: ModelError
) -> None:
    model = Flaky([error, "never"])
    with pytest.raises(ModelError) as caught:
        await retrying(model, time).request(HELLO)

    assert caught.value is error
    assert model.calls == 1
    assert time.sleeps == []
    assert len(caught.value.attempts) == 1


@pytest.mark.parametrize(
    "error",
    [
        http_error(408),
        http_error(409),
        http_error(429),
        http_error(500),
        http_error(503),
        ModelTimeoutError("slow"),
        ModelConnectionError("refused"),
        ModelResponseError("not JSON"),
    ],
    ids=lambda e: f"{e.code}-{getattr(e, 'status', '')}",
)
async def test_errors_that_may_pass_are_retried(time: FakeTime, error: ModelError) -> None:
    model = Flaky([error, "ok"])
    response = await retrying(model, time).request(HELLO)
    assert response.message.content == "ok"
    assert model.calls == 2


async def test_exceptions_that_are_not_model_errors_propagate_untouched(time: FakeTime) -> None:
    model = Flaky([KeyError("bug"), "never"])
    with pytest.raises(KeyError):
        await retrying(model, time).request(HELLO)
    assert model.calls == 1


async def test_cancellation_is_not_retried(time: FakeTime) -> None:
    model = Flaky([Hang(), "never"])
    task = asyncio.create_task(retrying(model, time).request(HELLO))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert model.calls == 1
    assert time.sleeps == []


# -- time limits -------------------------------------------------------------------------------


async def test_an_attempt_past_its_timeout_is_retried_as_a_timeout(time: FakeTime) -> None:
    model = Flaky([Hang(), Hang(), "ok"])
    response = await retrying(model, time, TopRandom(), attempt_timeout_s=5.0).request(HELLO)

    # Each hung attempt: the watchdog's 5 s, then the backoff (caps 0.5 and 1.0).
    assert time.sleeps == [5.0, 0.5, 5.0, 1.0]
    assert codes(response.attempts) == ["model_timeout", "model_timeout", None]
    assert [a.latency_ms for a in response.attempts] == [5000.0, 5000.0, 0.0]
    assert "attempt_timeout_s=5s" in (response.attempts[0].message or "")
    assert time.clock.monotonic() == 11.5


async def test_an_attempt_within_its_timeout_is_not_cut(time: FakeTime) -> None:
    model = Flaky([Slow(4.9, "ok")], time=time)
    response = await retrying(model, time, attempt_timeout_s=5.0).request(HELLO)
    assert response.message.content == "ok"
    assert response.attempts[0].latency_ms == pytest.approx(4900.0)
    assert time.sleeps == []  # the watchdog never had to wait


async def test_timeouts_exhausted_raise_a_timeout_error(time: FakeTime) -> None:
    model = Flaky([Hang(), Hang()])
    with pytest.raises(ModelTimeoutError) as caught:
        await retrying(model, time, max_attempts=2, attempt_timeout_s=1.0).request(HELLO)
    assert caught.value.retryable
    assert codes(caught.value.attempts) == ["model_timeout", "model_timeout"]


async def test_no_backoff_is_started_that_would_cross_the_deadline(time: FakeTime) -> None:
    # Attempts take 1 s each; waits are their caps: 1 s, then 2 s.
    model = Flaky([Slow(1.0, http_error(500))] * 3, time=time)
    with pytest.raises(ModelError) as caught:
        await retrying(
            model, time, TopRandom(), initial_backoff_s=1.0, deadline_s=4.5, max_attempts=10
        ).request(HELLO)

    # t=1 fail, wait 1 (t=2), t=3 fail: waiting 2 would end at 5 > 4.5, so give up.
    assert time.sleeps == [1.0]
    assert model.calls == 2
    assert len(caught.value.attempts) == 2
    assert time.clock.monotonic() == 3.0


async def test_a_wait_ending_exactly_at_the_deadline_is_not_started(time: FakeTime) -> None:
    model = Flaky([http_error(500), "never"])
    with pytest.raises(ModelError):
        await retrying(model, time, TopRandom(), deadline_s=0.5).request(HELLO)
    assert time.sleeps == []


async def test_the_deadline_cuts_an_attempt_when_attempts_have_a_timeout(time: FakeTime) -> None:
    model = Flaky([Hang(), Hang(), "never"])
    with pytest.raises(ModelTimeoutError) as caught:
        await retrying(model, time, TopRandom(), attempt_timeout_s=8.0, deadline_s=10.0).request(
            HELLO
        )

    # 8 s attempt, 0.5 s backoff, then only 1.5 s are left for the second attempt.
    assert time.sleeps == [8.0, 0.5, 1.5]
    assert "deadline" in caught.value.message
    assert model.calls == 2
    assert time.clock.monotonic() == 10.0


async def test_a_cancellation_from_outside_is_not_turned_into_a_timeout() -> None:
    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    model = Flaky([Hang(), "never"])
    wrapper = Retrying(model, RetryPolicy(attempt_timeout_s=5.0), sleep=never)
    task = asyncio.create_task(wrapper.request(HELLO))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert model.calls == 1


async def test_a_timeout_error_raised_by_the_model_is_a_retryable_timeout(time: FakeTime) -> None:
    model = Flaky([TimeoutError(), "ok"])
    response = await retrying(model, time).request(HELLO)
    assert codes(response.attempts) == ["model_timeout", None]
    assert "timed out" in (response.attempts[0].message or "")


async def test_a_limit_expiring_as_the_body_ends_does_not_cancel_later_work() -> None:
    async def at_once(seconds: float) -> None:
        return None

    async with time_limit(1.0, at_once):
        await asyncio.sleep(0)  # the watchdog finishes now too; its callback comes after
    for _ in range(3):
        await asyncio.sleep(0)  # no stray cancellation arrives


async def test_no_limit_is_no_watchdog() -> None:
    async def refuse(seconds: float) -> None:
        raise AssertionError("no watchdog expected")

    async with time_limit(None, refuse):
        await asyncio.sleep(0)


# -- what it reports ---------------------------------------------------------------------------


async def test_success_reports_every_attempt_and_who_served(time: FakeTime) -> None:
    model = Flaky(
        [Slow(0.25, http_error(500)), Slow(0.5, http_error(429, retry_after=2.0)), Slow(1.0, "ok")],
        name="openai:gpt-test",
        time=time,
    )
    wrapper = retrying(model, time, TopRandom())
    response = await wrapper.request(HELLO)

    assert response.served_by == "openai:gpt-test"
    assert response.attempts == (
        Attempt(
            model="openai:gpt-test",
            code="model_server_error",
            message="HTTP 500",
            latency_ms=250.0,
        ),
        Attempt(
            model="openai:gpt-test",
            code="model_rate_limited",
            message="HTTP 429",
            latency_ms=500.0,
            waited_ms=500.0,
        ),
        Attempt(model="openai:gpt-test", latency_ms=1000.0, waited_ms=2000.0),
    )
    assert response.attempts[-1].ok
    assert wrapper.name == "openai:gpt-test"


async def test_a_served_by_from_the_inner_model_is_kept(time: FakeTime) -> None:
    class Reporting(Flaky):
        async def request(self, request: Any) -> Any:
            await super().request(request)
            return answer("ok", served_by="anthropic:claude")

    response = await retrying(Reporting(["ok"]), time).request(HELLO)
    assert response.served_by == "anthropic:claude"


async def test_attempts_of_a_wrapped_fallback_are_kept_and_appended(time: FakeTime) -> None:
    primary = Flaky([http_error(500), http_error(500)], name="primary")
    backup = Flaky([http_error(503), "ok"], name="backup")
    chain = Fallback(primary, backup, clock=time.clock)
    response = await retrying(chain, time, TopRandom()).request(HELLO)

    assert [(a.model, a.code) for a in response.attempts] == [
        ("primary", "model_server_error"),
        ("backup", "model_server_error"),
        ("primary", "model_server_error"),
        ("backup", None),
    ]
    assert [a.waited_ms for a in response.attempts] == [0.0, 0.0, 500.0, 0.0]
    assert response.served_by == "backup"


async def test_defaults_use_real_time_without_waiting_for_success() -> None:
    response = await Retrying(Flaky(["ok"])).request(HELLO)
    assert response.attempts[0].ok


# -- streams -----------------------------------------------------------------------------------


async def collect(stream: Any) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_a_stream_that_fails_before_any_event_is_retried(time: FakeTime) -> None:
    model = Flaky([ModelConnectionError("cut"), Empty(), "hello world"])
    events = await collect(retrying(model, time, TopRandom()).stream(HELLO))

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["hello", "world"]
    complete = events[-1]
    assert isinstance(complete, StreamComplete)
    assert codes(complete.response.attempts) == [
        "model_connection_error",
        "model_response_error",
        None,
    ]
    assert complete.response.served_by == "flaky"
    assert time.sleeps == [0.5, 1.0]
    assert model.streams_closed == 3


async def test_a_stream_that_failed_after_an_event_is_not_retried(time: FakeTime) -> None:
    error = ModelConnectionError("cut mid-answer")
    model = Flaky([http_error(500), MidStream(error, deltas=2), "never"])
    seen: list[StreamEvent] = []
    with pytest.raises(ModelConnectionError) as caught:
        await collect_into(retrying(model, time).stream(HELLO), seen)

    assert caught.value is error
    assert len(seen) == 2
    assert codes(caught.value.attempts) == ["model_server_error", "model_connection_error"]
    assert model.calls == 2


async def test_the_first_event_of_a_stream_has_the_attempt_time_limit(time: FakeTime) -> None:
    model = Flaky([Hang(), "ok"])
    events = await collect(retrying(model, time, TopRandom(), attempt_timeout_s=3.0).stream(HELLO))
    complete = events[-1]
    assert isinstance(complete, StreamComplete)
    assert codes(complete.response.attempts) == ["model_timeout", None]
    assert time.sleeps == [3.0, 0.5]


async def test_a_stream_gives_up_like_a_request(time: FakeTime) -> None:
    model = Flaky([http_error(401)])
    with pytest.raises(ModelError) as caught:
        await collect(retrying(model, time).stream(HELLO))
    assert caught.value.code == "model_authentication"
    assert len(caught.value.attempts) == 1


async def test_closing_a_stream_early_closes_the_inner_stream(time: FakeTime) -> None:
    model = Flaky(["one two three"])
    stream = retrying(model, time).stream(HELLO)
    assert await anext(stream) == TextDelta(text="one")
    await stream.aclose()  # type: ignore[attr-defined]
    assert model.streams_closed == 1


async def test_cancelling_a_stream_while_it_waits_is_not_retried(time: FakeTime) -> None:
    model = Flaky([Hang(), "never"])
    task = asyncio.create_task(collect(retrying(model, time).stream(HELLO)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert model.calls == 1
    assert model.streams_closed == 1


# -- the wrapper -------------------------------------------------------------------------------


async def test_name_and_aclose_pass_through(time: FakeTime) -> None:
    model = Flaky([], name="ollama:llama3.2")
    wrapper = retrying(model, time)
    assert wrapper.name == "ollama:llama3.2"
    assert wrapper.model is model
    assert wrapper.policy == RetryPolicy()
    assert "Retrying(" in repr(wrapper)
    await wrapper.aclose()
    assert model.closed

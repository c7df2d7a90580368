"""Circuit breakers: the policy, every transition on every board (one contract suite over the
memory and Redis boards, on a fake clock), and the CircuitBreaker wrapper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from keel._core.messages import Attempt, StreamComplete, StreamEvent
from keel.errors import (
    AllModelsFailedError,
    CircuitOpenError,
    ModelConnectionError,
    ModelError,
    ModelResponseError,
    ModelTimeoutError,
)
from keel.resilience import (
    BreakerBoard,
    BreakerPolicy,
    BreakerStatus,
    CircuitBreaker,
    MemoryBreakerBoard,
    RedisBreakerBoard,
    counts_as_failure,
)
from keel.testing._clock import FakeClock
from tests.redis import delete_prefix, require_redis
from tests.resilience._resilience import (
    HELLO,
    Flaky,
    Hang,
    MidStream,
    collect_into,
    http_error,
    non_retryable,
    unique_prefix,
)

MakeBoard = Callable[..., BreakerBoard]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def make_board(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[MakeBoard]:
    """Makes boards of the parametrized kind on the fake clock: ``make_board(**policy)``."""
    boards: list[BreakerBoard] = []
    url = require_redis() if request.param == "redis" else ""
    prefix = unique_prefix()

    def make(**policy: Any) -> BreakerBoard:
        board: BreakerBoard
        if request.param == "memory":
            board = MemoryBreakerBoard(BreakerPolicy(**policy), clock=clock)
        else:
            board = RedisBreakerBoard(url, BreakerPolicy(**policy), prefix=prefix, clock=clock)
        boards.append(board)
        return board

    yield make
    for board in boards:
        await board.close()
    if url:
        await delete_prefix(url, prefix)


async def fail(board: BreakerBoard, name: str, times: int) -> None:
    for _ in range(times):
        await board.before_call(name)
        await board.record(name, False)


async def refused(board: BreakerBoard, name: str) -> CircuitOpenError:
    with pytest.raises(CircuitOpenError) as caught:
        await board.before_call(name)
    return caught.value


# -- the policy --------------------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = BreakerPolicy()
    assert (policy.failure_threshold, policy.failure_rate, policy.window) == (5, None, 20)
    assert (policy.min_calls, policy.cooldown_s, policy.half_open_max_calls) == (10, 30.0, 1)
    assert policy.trial_timeout_s == 120.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"failure_threshold": None}, "needs failure_threshold or failure_rate"),
        ({"failure_threshold": 0}, "failure_threshold must be an int of at least 1"),
        ({"failure_rate": 0.0}, "failure_rate must be greater than 0"),
        ({"failure_rate": 1.5}, "failure_rate is a share of calls"),
        ({"window": 0}, "window must be an int of at least 1"),
        ({"min_calls": 30}, r"min_calls \(30\) cannot exceed window \(20\)"),
        ({"cooldown_s": 0}, "cooldown_s must be greater than 0"),
        ({"cooldown_s": float("inf")}, "cooldown_s must be a finite number"),
        ({"half_open_max_calls": 0}, "half_open_max_calls must be an int of at least 1"),
        ({"trial_timeout_s": -1.0}, "trial_timeout_s must be greater than 0"),
    ],
)
def test_policy_rejects_bad_values(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerPolicy(**fields)


def test_policy_trips_on_the_threshold_or_the_rate() -> None:
    assert BreakerPolicy(failure_threshold=3).trips(3, "111")
    assert not BreakerPolicy(failure_threshold=3).trips(2, "0111")
    rate = BreakerPolicy(failure_threshold=None, failure_rate=0.5, window=4, min_calls=4)
    assert not rate.trips(9, "111")  # too few calls to judge
    assert rate.trips(1, "0101")
    assert not rate.trips(1, "0001")


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (http_error(500), True),
        (http_error(429), True),
        (http_error(408), True),
        (ModelTimeoutError("slow"), True),
        (ModelConnectionError("refused"), True),
        (ModelResponseError("not JSON"), True),
        (http_error(400), False),
        (http_error(401), False),
        (http_error(404), False),
        (non_retryable("model_context_window"), False),
        (non_retryable("model_content_policy"), False),
        (CircuitOpenError("m", retry_in_s=1.0), False),
        (ValueError("a bug"), False),
    ],
)
def test_which_errors_count_against_the_breaker(error: BaseException, counts: bool) -> None:
    assert counts_as_failure(error) is counts


# -- transitions, on every board ---------------------------------------------------------------


async def test_a_new_breaker_is_closed(make_board: MakeBoard) -> None:
    board = make_board()
    await board.before_call("m")
    assert await board.status("m") == BreakerStatus(name="m")
    assert await board.statuses() == []


async def test_it_opens_after_the_threshold_of_failures_in_a_row(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(failure_threshold=3, cooldown_s=30.0)
    await fail(board, "m", 2)
    status = await board.status("m")
    assert (status.state, status.consecutive_failures) == ("closed", 2)

    opened_at = clock.now()
    await fail(board, "m", 1)
    error = await refused(board, "m")
    assert error.retry_in_s == pytest.approx(30.0)
    assert error.model == "m"
    status = await board.status("m")
    assert status.state == "open"
    assert status.consecutive_failures == 3
    assert status.opened_at == pytest.approx(opened_at)
    assert status.retry_at == pytest.approx(opened_at + 30.0)


async def test_a_success_resets_the_failures_in_a_row(make_board: MakeBoard) -> None:
    board = make_board(failure_threshold=3)
    await fail(board, "m", 2)
    await board.record("m", True)
    await fail(board, "m", 2)
    await board.before_call("m")
    assert (await board.status("m")).consecutive_failures == 2


async def test_it_stays_open_until_the_cooldown_ends(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(failure_threshold=1, cooldown_s=30.0)
    await fail(board, "m", 1)
    clock.advance(29.5)
    assert (await refused(board, "m")).retry_in_s == pytest.approx(0.5)
    assert (await board.status("m")).state == "open"
    clock.advance(0.5)
    assert (await board.status("m")).state == "half_open"
    await board.before_call("m")  # the trial


async def test_half_open_lets_one_trial_through_at_a_time(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(failure_threshold=1, cooldown_s=10.0, trial_timeout_s=60.0)
    await fail(board, "m", 1)
    clock.advance(10.0)
    await board.before_call("m")
    error = await refused(board, "m")
    assert error.retry_in_s == pytest.approx(60.0)  # when the trial slot would be taken back
    status = await board.status("m")
    assert (status.state, status.trials_in_flight) == ("half_open", 1)


async def test_half_open_allows_as_many_trials_as_the_policy_says(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(failure_threshold=1, cooldown_s=10.0, half_open_max_calls=2)
    await fail(board, "m", 1)
    clock.advance(10.0)
    await board.before_call("m")
    await board.before_call("m")
    await refused(board, "m")


async def test_a_trial_that_succeeds_closes_the_breaker(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(failure_threshold=2, cooldown_s=10.0)
    await fail(board, "m", 2)
    clock.advance(10.0)
    await board.before_call("m")
    await board.record("m", True)
    assert await board.status("m") == BreakerStatus(name="m")
    await fail(board, "m", 1)  # counting starts afresh
    await board.before_call("m")


async def test_a_trial_that_fails_opens_the_breaker_again(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(failure_threshold=2, cooldown_s=10.0)
    await fail(board, "m", 2)
    clock.advance(12.0)
    await board.before_call("m")
    reopened_at = clock.now()
    await board.record("m", False)

    status = await board.status("m")
    assert status.state == "open"
    assert status.opened_at == pytest.approx(reopened_at)
    assert status.retry_at == pytest.approx(reopened_at + 10.0)
    assert (await refused(board, "m")).retry_in_s == pytest.approx(10.0)
    clock.advance(10.0)
    await board.before_call("m")


async def test_a_released_trial_frees_its_slot_and_stays_half_open(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(failure_threshold=1, cooldown_s=10.0)
    await fail(board, "m", 1)
    clock.advance(10.0)
    await board.before_call("m")
    await board.release("m")
    assert (await board.status("m")).state == "half_open"
    await board.before_call("m")  # the next call is the trial
    await refused(board, "m")


async def test_release_outside_half_open_changes_nothing(make_board: MakeBoard) -> None:
    board = make_board(failure_threshold=2)
    await board.release("m")
    await fail(board, "m", 1)
    await board.release("m")
    assert (await board.status("m")).consecutive_failures == 1
    await fail(board, "m", 1)
    await board.release("m")
    assert (await board.status("m")).state == "open"


async def test_a_lost_trial_slot_is_taken_back_after_the_trial_timeout(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(failure_threshold=1, cooldown_s=10.0, trial_timeout_s=60.0)
    await fail(board, "m", 1)
    clock.advance(10.0)
    await board.before_call("m")  # this trial's process dies: it never records
    clock.advance(59.0)
    await refused(board, "m")
    clock.advance(1.0)
    await board.before_call("m")


async def test_outcomes_arriving_while_open_change_nothing(
    make_board: MakeBoard, clock: FakeClock
) -> None:
    board = make_board(failure_threshold=1, cooldown_s=10.0)
    await fail(board, "m", 1)
    opened = await board.status("m")
    clock.advance(5.0)
    await board.record("m", True)  # a call that started before the breaker opened
    await board.record("m", False)
    assert await board.status("m") == opened
    await refused(board, "m")


async def test_it_opens_on_the_failure_rate_once_enough_calls_were_seen(
    make_board: MakeBoard,
) -> None:
    board = make_board(failure_threshold=None, failure_rate=0.5, window=4, min_calls=4)
    for ok in (False, True, False):
        await board.before_call("m")
        await board.record("m", ok)
    status = await board.status("m")
    assert (status.state, status.calls_in_window) == ("closed", 3)
    assert status.failure_rate == pytest.approx(2 / 3)

    await board.record("m", True)  # 2 of 4: the rate is reached
    assert (await board.status("m")).state == "open"
    await refused(board, "m")


async def test_the_rate_window_keeps_only_the_latest_calls(make_board: MakeBoard) -> None:
    board = make_board(failure_threshold=None, failure_rate=0.75, window=4, min_calls=4)
    for ok in (False, False, True, True, True, False):
        await board.record("m", ok)
    status = await board.status("m")
    assert (status.state, status.calls_in_window) == ("closed", 4)
    assert status.failure_rate == pytest.approx(0.25)
    assert status.consecutive_failures == 1


async def test_reset_closes_the_breaker(make_board: MakeBoard) -> None:
    board = make_board(failure_threshold=1)
    await fail(board, "m", 1)
    await board.reset("m")
    await board.before_call("m")
    assert await board.status("m") == BreakerStatus(name="m")


async def test_breakers_are_independent_and_listed_by_name(make_board: MakeBoard) -> None:
    board = make_board(failure_threshold=2)
    await fail(board, "zeta", 2)
    await fail(board, "alpha", 1)
    await board.before_call("alpha")
    statuses = await board.statuses()
    assert [(s.name, s.state, s.consecutive_failures) for s in statuses] == [
        ("alpha", "closed", 1),
        ("zeta", "open", 2),
    ]


async def test_the_board_exposes_its_policy(make_board: MakeBoard) -> None:
    board = make_board(failure_threshold=7)
    assert board.policy == BreakerPolicy(failure_threshold=7)
    assert isinstance(board, BreakerBoard)


# -- the CircuitBreaker wrapper ----------------------------------------------------------------


def memory_board(clock: FakeClock, **policy: Any) -> MemoryBreakerBoard:
    return MemoryBreakerBoard(BreakerPolicy(**policy), clock=clock)


async def test_an_open_breaker_refuses_without_calling_the_model(clock: FakeClock) -> None:
    model = Flaky([http_error(500)] * 3 + ["never"], name="openai:gpt-test")
    breaker = CircuitBreaker(model, memory_board(clock, failure_threshold=3))
    for _ in range(3):
        with pytest.raises(ModelError):
            await breaker.request(HELLO)

    with pytest.raises(CircuitOpenError) as caught:
        await breaker.request(HELLO)
    assert model.calls == 3
    error = caught.value
    assert error.model == "openai:gpt-test"
    assert error.attempts == (
        Attempt(
            model="openai:gpt-test",
            code="circuit_open",
            message=error.message,
            skipped=True,
        ),
    )
    assert not error.attempts[0].ok
    assert "circuit breaker is open" in error.message


async def test_client_errors_do_not_count(clock: FakeClock) -> None:
    errors = [http_error(400), http_error(401), http_error(404), non_retryable("x")] * 3
    model = Flaky(errors)
    breaker = CircuitBreaker(model, memory_board(clock, failure_threshold=2))
    for _ in errors:
        with pytest.raises(ModelError):
            await breaker.request(HELLO)
    assert await breaker.status() == BreakerStatus(name="flaky")


async def test_a_client_error_in_half_open_releases_the_trial_slot(clock: FakeClock) -> None:
    model = Flaky([http_error(503), http_error(400), "ok"])
    board = memory_board(clock, failure_threshold=1, cooldown_s=5.0)
    breaker = CircuitBreaker(model, board)
    with pytest.raises(ModelError):
        await breaker.request(HELLO)
    clock.advance(5.0)
    with pytest.raises(ModelError, match="HTTP 400"):
        await breaker.request(HELLO)  # the trial: the request was wrong, the provider is fine
    assert (await breaker.status()).state == "half_open"
    response = await breaker.request(HELLO)  # the next trial
    assert response.message.content == "ok"
    assert (await breaker.status()).state == "closed"


async def test_a_cancelled_trial_releases_its_slot(clock: FakeClock) -> None:
    model = Flaky([http_error(503), Hang(), "ok"])
    breaker = CircuitBreaker(model, memory_board(clock, failure_threshold=1, cooldown_s=5.0))
    with pytest.raises(ModelError):
        await breaker.request(HELLO)
    clock.advance(5.0)
    task = asyncio.create_task(breaker.request(HELLO))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await breaker.request(HELLO)).message.content == "ok"


async def test_a_bug_in_the_model_is_no_verdict(clock: FakeClock) -> None:
    model = Flaky([http_error(503), KeyError("bug"), "ok"])
    breaker = CircuitBreaker(model, memory_board(clock, failure_threshold=1, cooldown_s=5.0))
    with pytest.raises(ModelError):
        await breaker.request(HELLO)
    clock.advance(5.0)
    with pytest.raises(KeyError):
        await breaker.request(HELLO)
    assert (await breaker.status()).state == "half_open"
    await breaker.request(HELLO)


async def test_models_can_share_one_breaker_by_name(clock: FakeClock) -> None:
    board = memory_board(clock, failure_threshold=2)
    mini = CircuitBreaker(Flaky([http_error(500)], name="openai:mini"), board, name="openai")
    big = CircuitBreaker(Flaky([http_error(500)], name="openai:big"), board, name="openai")
    for breaker in (mini, big):
        with pytest.raises(ModelError):
            await breaker.request(HELLO)
    with pytest.raises(CircuitOpenError) as caught:
        await mini.request(HELLO)
    assert caught.value.model == "openai:mini"
    assert "breaker 'openai'" in caught.value.message
    assert caught.value.attempts[0].model == "openai:mini"
    assert (mini.name, mini.breaker_name) == ("openai:mini", "openai")


async def test_the_wrapper_passes_name_and_aclose_through(clock: FakeClock) -> None:
    model = Flaky([], name="anthropic:claude")
    board = memory_board(clock)
    breaker = CircuitBreaker(model, board)
    assert breaker.name == "anthropic:claude"
    assert breaker.breaker_name == "anthropic:claude"
    assert (breaker.model, breaker.board) == (model, board)
    assert "CircuitBreaker(" in repr(breaker)
    assert "MemoryBreakerBoard(" in repr(board)
    await breaker.aclose()
    assert model.closed


async def test_the_default_board_is_a_fresh_memory_board() -> None:
    breaker = CircuitBreaker(Flaky(["ok"]))
    assert isinstance(breaker.board, MemoryBreakerBoard)
    await breaker.request(HELLO)


def test_a_breaker_needs_a_name() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        CircuitBreaker(Flaky([]), name="")


async def test_a_successful_request_passes_through_unchanged(clock: FakeClock) -> None:
    breaker = CircuitBreaker(Flaky(["ok"]), memory_board(clock))
    response = await breaker.request(HELLO)
    assert (response.attempts, response.served_by) == ((), "")


# -- streams through the breaker ---------------------------------------------------------------


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_a_completed_stream_closes_a_half_open_breaker(clock: FakeClock) -> None:
    model = Flaky([http_error(500), "hello there"])
    breaker = CircuitBreaker(model, memory_board(clock, failure_threshold=1, cooldown_s=1.0))
    with pytest.raises(ModelError):
        await collect(breaker.stream(HELLO))
    assert (await breaker.status()).state == "open"
    with pytest.raises(CircuitOpenError):
        await collect(breaker.stream(HELLO))
    clock.advance(1.0)
    events = await collect(breaker.stream(HELLO))
    assert isinstance(events[-1], StreamComplete)
    assert (await breaker.status()).state == "closed"
    assert model.calls == 2


async def test_a_stream_failing_midway_counts_as_a_failure(clock: FakeClock) -> None:
    model = Flaky([MidStream(ModelConnectionError("cut"), deltas=2)])
    breaker = CircuitBreaker(model, memory_board(clock, failure_threshold=1))
    seen: list[StreamEvent] = []
    with pytest.raises(ModelConnectionError):
        await collect_into(breaker.stream(HELLO), seen)
    assert len(seen) == 2
    assert (await breaker.status()).state == "open"


async def test_a_stream_left_unread_gives_back_its_trial_slot(clock: FakeClock) -> None:
    model = Flaky([http_error(500), "one two three", "four"])
    breaker = CircuitBreaker(model, memory_board(clock, failure_threshold=1, cooldown_s=1.0))
    with pytest.raises(ModelError):
        await breaker.request(HELLO)
    clock.advance(1.0)
    stream = breaker.stream(HELLO)
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert model.streams_closed == 1
    status = await breaker.status()
    assert (status.state, status.trials_in_flight) == ("half_open", 0)
    assert len(await collect(breaker.stream(HELLO))) == 2


async def test_a_client_error_in_a_stream_does_not_count(clock: FakeClock) -> None:
    model = Flaky([http_error(400)])
    breaker = CircuitBreaker(model, memory_board(clock, failure_threshold=1))
    with pytest.raises(ModelError):
        await collect(breaker.stream(HELLO))
    assert (await breaker.status()).state == "closed"


async def test_an_inner_fallback_failing_counts_when_any_cause_was_retryable(
    clock: FakeClock,
) -> None:
    # AllModelsFailedError is retryable when one of its causes was: a provider outage.
    error = AllModelsFailedError([http_error(500), http_error(400)])
    assert counts_as_failure(error)
    assert not counts_as_failure(AllModelsFailedError([http_error(400)]))

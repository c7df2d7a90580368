"""Fallback chains: the order, what moves on, what is reported, streams, and the composition
Fallback(Retrying(CircuitBreaker(...)), ...) on fake time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from keel._core.messages import StreamComplete, StreamEvent, TextDelta
from keel.errors import (
    AllModelsFailedError,
    CircuitOpenError,
    ModelConnectionError,
    ModelError,
)
from keel.ports import Model
from keel.resilience import (
    BreakerPolicy,
    CircuitBreaker,
    Fallback,
    MemoryBreakerBoard,
    Retrying,
    RetryPolicy,
)
from tests.resilience._resilience import (
    HELLO,
    Empty,
    FakeTime,
    Flaky,
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


def test_the_name_lists_the_chain() -> None:
    chain = Fallback(Flaky([], name="a"), Flaky([], name="b"), Flaky([], name="c"))
    assert chain.name == "fallback(a,b,c)"
    assert [m.name for m in chain.models] == ["a", "b", "c"]
    assert repr(chain).startswith("Fallback(")


def test_it_needs_models() -> None:
    with pytest.raises(ValueError, match="at least one model"):
        Fallback()
    with pytest.raises(TypeError, match="got str"):
        Fallback("openai:gpt-4o")  # type: ignore[arg-type]


async def test_the_first_model_that_answers_serves(time: FakeTime) -> None:
    first = Flaky([Slow(0.5, http_error(500))], name="a", time=time)
    second = Flaky([Slow(0.25, "from b")], name="b", time=time)
    third = Flaky([], name="c")
    response = await Fallback(first, second, third, clock=time.clock).request(HELLO)

    assert response.message.content == "from b"
    assert response.served_by == "b"
    assert [(a.model, a.code, a.latency_ms) for a in response.attempts] == [
        ("a", "model_server_error", 500.0),
        ("b", None, 250.0),
    ]
    assert third.calls == 0


@pytest.mark.parametrize(
    "error",
    [
        http_error(500),
        http_error(400),
        http_error(401),
        http_error(404),
        non_retryable("model_context_window"),
        non_retryable("model_content_policy"),
        CircuitOpenError("a", retry_in_s=3.0),
    ],
    ids=lambda e: e.code,
)
async def test_any_model_error_moves_on(error: ModelError) -> None:
    response = await Fallback(Flaky([error], name="a"), Flaky(["ok"], name="b")).request(HELLO)
    assert response.served_by == "b"


async def test_an_exception_that_is_not_a_model_error_stops_the_chain() -> None:
    backup = Flaky(["never"], name="b")
    with pytest.raises(KeyError):
        await Fallback(Flaky([KeyError("bug")], name="a"), backup).request(HELLO)
    assert backup.calls == 0


async def test_when_all_fail_every_cause_is_kept() -> None:
    errors = [http_error(500), non_retryable("model_context_window"), http_error(401)]
    models = [Flaky([e], name=n) for e, n in zip(errors, "abc", strict=True)]
    with pytest.raises(AllModelsFailedError) as caught:
        await Fallback(*models).request(HELLO)

    failure = caught.value
    assert list(failure.errors) == errors
    assert [(a.model, a.code) for a in failure.attempts] == [
        ("a", "model_server_error"),
        ("b", "model_context_window"),
        ("c", "model_authentication"),
    ]
    assert failure.__cause__ is errors[-1]
    assert failure.retryable  # one cause was
    assert "a: [model_server_error]" in failure.message


async def test_a_served_by_reported_by_a_model_is_kept() -> None:
    class Reporting(Flaky):
        async def request(self, request: Any) -> Any:
            await super().request(request)
            return answer("ok", served_by="inner-model")

    response = await Fallback(Reporting(["ok"], name="outer")).request(HELLO)
    assert response.served_by == "inner-model"


async def test_nested_chains_keep_every_attempt() -> None:
    inner = Fallback(Flaky([http_error(500)], name="a"), Flaky([http_error(503)], name="b"))
    response = await Fallback(inner, Flaky(["ok"], name="c")).request(HELLO)
    assert [a.model for a in response.attempts] == ["a", "b", "c"]
    assert response.served_by == "c"


async def test_aclose_closes_every_model_even_when_one_fails() -> None:
    class Broken(Flaky):
        async def aclose(self) -> None:
            raise OSError("cannot close")

    first, third = Flaky([], name="a"), Flaky([], name="c")
    with pytest.raises(OSError, match="cannot close"):
        await Fallback(first, Broken([], name="b"), third).aclose()
    assert first.closed
    assert third.closed


async def test_aclose_passes_through() -> None:
    models = [Flaky([], name="a"), Flaky([], name="b")]
    await Fallback(*models).aclose()
    assert all(m.closed for m in models)


# -- streams -----------------------------------------------------------------------------------


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_a_stream_moves_on_while_nothing_was_passed_on() -> None:
    first = Flaky([http_error(500)], name="a")
    second = Flaky([Empty()], name="b")
    third = Flaky(["hello world"], name="c")
    events = await collect(Fallback(first, second, third).stream(HELLO))

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["hello", "world"]
    complete = events[-1]
    assert isinstance(complete, StreamComplete)
    assert complete.response.served_by == "c"
    assert [(a.model, a.code) for a in complete.response.attempts] == [
        ("a", "model_server_error"),
        ("b", "model_response_error"),
        ("c", None),
    ]
    assert (first.streams_closed, second.streams_closed, third.streams_closed) == (1, 1, 1)


async def test_a_stream_that_failed_after_an_event_is_raised() -> None:
    error = ModelConnectionError("cut")
    backup = Flaky(["never"], name="b")
    seen: list[StreamEvent] = []
    chain = Fallback(Flaky([MidStream(error)], name="a"), backup)
    with pytest.raises(ModelConnectionError) as caught:
        await collect_into(chain.stream(HELLO), seen)
    assert caught.value is error
    assert len(seen) == 1
    assert [(a.model, a.code) for a in error.attempts] == [("a", "model_connection_error")]
    assert backup.calls == 0


async def test_a_stream_of_a_chain_that_all_fails_raises_every_cause() -> None:
    chain = Fallback(Flaky([http_error(500)], name="a"), Flaky([http_error(401)], name="b"))
    with pytest.raises(AllModelsFailedError) as caught:
        await collect(chain.stream(HELLO))
    assert [e.code for e in caught.value.errors] == ["model_server_error", "model_authentication"]
    assert len(caught.value.attempts) == 2


async def test_closing_a_chain_stream_early_closes_the_model_stream() -> None:
    model = Flaky(["one two"], name="a")
    stream = Fallback(model).stream(HELLO)
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert model.streams_closed == 1


async def test_a_bug_in_a_stream_stops_the_chain() -> None:
    backup = Flaky(["never"], name="b")
    with pytest.raises(KeyError):
        await collect(Fallback(Flaky([KeyError("bug")], name="a"), backup).stream(HELLO))
    assert backup.calls == 0


# -- composition -------------------------------------------------------------------------------


def protected(model: Model, board: MemoryBreakerBoard, time: FakeTime) -> Retrying:
    return Retrying(
        CircuitBreaker(model, board),
        RetryPolicy(max_attempts=3),
        clock=time.clock,
        sleep=time.sleep,
        rng=TopRandom(),
    )


async def test_retry_breaker_fallback_compose(time: FakeTime) -> None:
    board = MemoryBreakerBoard(BreakerPolicy(failure_threshold=4, cooldown_s=30), clock=time.clock)
    primary = Flaky([*(http_error(500) for _ in range(4)), "primary is back"], name="primary")
    backup = Flaky(["backup 1", "backup 2"], name="backup")
    chain = Fallback(
        protected(primary, board, time), protected(backup, board, time), clock=time.clock
    )

    first = await chain.request(HELLO)  # primary: 3 attempts fail, backup serves
    assert first.served_by == "backup"
    assert [(a.model, a.code, a.waited_ms) for a in first.attempts] == [
        ("primary", "model_server_error", 0.0),
        ("primary", "model_server_error", 500.0),
        ("primary", "model_server_error", 1000.0),
        ("backup", None, 0.0),
    ]

    second = await chain.request(HELLO)  # the 4th failure opens the breaker: no retry
    assert second.served_by == "backup"
    assert [(a.code, a.skipped) for a in second.attempts] == [
        ("model_server_error", False),
        ("circuit_open", True),
        (None, False),
    ]
    assert primary.calls == 4

    time.clock.advance(30.0)  # the cooldown is over: the trial succeeds
    third = await chain.request(HELLO)
    assert third.served_by == "primary"
    assert third.message.content == "primary is back"
    assert (await board.status("primary")).state == "closed"
    assert time.sleeps == [0.5, 1.0, 0.5]

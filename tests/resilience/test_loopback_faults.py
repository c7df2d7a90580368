"""The resilience wrappers around OpenAIModel, against a real OpenAI-compatible HTTP server on
127.0.0.1 that injects faults: what is retried, what is not, Retry-After from the header, a
dead provider opening its breaker while a fallback serves, and the half-open probe."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator

import pytest

from keel._core.messages import ModelSettings, StreamComplete, StreamEvent, TextDelta
from keel.errors import CircuitOpenError, ModelConnectionError, ModelError, ModelTimeoutError
from keel.models._openai import OpenAIModel
from keel.models._rules import RulesModel
from keel.resilience import (
    BreakerPolicy,
    CircuitBreaker,
    Fallback,
    MemoryBreakerBoard,
    Retrying,
    RetryPolicy,
)
from keel.testing._clock import FakeClock
from keel.testing._openai_server import Fault, OpenAICompatibleServer
from tests.resilience._resilience import HELLO, collect_into

API_KEY = "sk-test-resilience-0123456789"
# Backoffs of at most 10 ms: any longer wait can only come from the provider's Retry-After.
QUICK = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.01, max_attempts=3)


class Waits:
    """A sleep that records how long it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.seconds.append(seconds)


def script(server: OpenAICompatibleServer, faults: list[Fault], reply: str) -> None:
    """Queue ``faults``, then ``reply`` for the request that gets through. A fault that breaks
    the body of an answer (malformed, cut) uses up a scripted reply of its own."""
    server.add_fault(*faults)
    for fault in faults:
        if fault.kind in ("malformed_json", "cut_stream"):
            server.add_reply("lost to the fault")
    server.add_reply(reply)


def started_server() -> OpenAICompatibleServer:
    return OpenAICompatibleServer(api_key=API_KEY).start()


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer(api_key=API_KEY) as srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def backup_server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer(api_key=API_KEY, model="backup-model") as srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
async def model(server: OpenAICompatibleServer) -> AsyncIterator[OpenAIModel]:
    llm = OpenAIModel("gpt-test", base_url=server.base_url, api_key=API_KEY, timeout_s=5)
    yield llm
    await llm.aclose()


@pytest.fixture
async def backup(backup_server: OpenAICompatibleServer) -> AsyncIterator[OpenAIModel]:
    llm = OpenAIModel("backup-model", base_url=backup_server.base_url, api_key=API_KEY, timeout_s=5)
    yield llm
    await llm.aclose()


@pytest.fixture
def waits() -> Waits:
    return Waits()


def retrying(
    model: OpenAIModel | CircuitBreaker, waits: Waits, policy: RetryPolicy = QUICK
) -> Retrying:
    return Retrying(model, policy, sleep=waits.sleep, rng=random.Random(5))


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


# -- Retry-After -------------------------------------------------------------------------------


async def test_a_429_with_retry_after_waits_what_the_header_says(
    server: OpenAICompatibleServer, model: OpenAIModel, waits: Waits
) -> None:
    server.add_fault(Fault.status(429, retry_after=1))
    server.add_reply("after the rate limit")
    response = await retrying(model, waits).request(HELLO)

    assert response.message.content == "after the rate limit"
    assert waits.seconds == [1.0]  # the jitter alone is at most 0.01
    assert [a.code for a in response.attempts] == ["model_rate_limited", None]
    assert response.attempts[1].waited_ms == 1000.0
    assert len(server.requests) == 2


async def test_a_429_without_retry_after_waits_only_the_jitter(
    server: OpenAICompatibleServer, model: OpenAIModel, waits: Waits
) -> None:
    server.add_fault(Fault.status(429))
    await retrying(model, waits).request(HELLO)
    assert len(waits.seconds) == 1
    assert 0 <= waits.seconds[0] <= 0.01


async def test_a_retry_after_past_the_cap_hands_over_to_the_fallback(
    server: OpenAICompatibleServer, model: OpenAIModel, waits: Waits
) -> None:
    server.add_fault(Fault.status(429, retry_after=3600))
    chain = Fallback(retrying(model, waits), RulesModel())
    response = await chain.request(HELLO)

    assert response.served_by == "rules"
    assert waits.seconds == []
    assert len(server.requests) == 1
    assert [(a.model, a.code) for a in response.attempts] == [
        ("openai:gpt-test", "model_rate_limited"),
        ("rules", None),
    ]


# -- retried, then served ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.status(500), "model_server_error"),
        (Fault.status(503, retry_after=0), "model_server_error"),
        (Fault.malformed_json(), "model_response_error"),
        (Fault.cut_stream(), "model_connection_error"),  # half the body, then the socket closes
    ],
    ids=["500", "503", "malformed-json", "cut-body"],
)
async def test_a_passing_fault_is_retried_then_served(
    server: OpenAICompatibleServer, model: OpenAIModel, waits: Waits, fault: Fault, code: str
) -> None:
    script(server, [fault, fault], "third time lucky")
    response = await retrying(model, waits).request(HELLO)

    assert response.message.content == "third time lucky"
    assert [a.code for a in response.attempts] == [code, code, None]
    assert response.served_by == "openai:gpt-test"
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.cut_stream(0), "model_connection_error"),
        (Fault.cut_stream(1), "model_connection_error"),  # the role chunk carries no text
        (Fault.malformed_json(), "model_response_error"),
        (Fault.status(502), "model_server_error"),
    ],
    ids=["cut-at-once", "cut-after-role", "malformed-json", "502"],
)
async def test_a_stream_failing_before_any_text_is_retried(
    server: OpenAICompatibleServer, model: OpenAIModel, waits: Waits, fault: Fault, code: str
) -> None:
    script(server, [fault], "streamed after all")
    events = await collect(retrying(model, waits).stream(HELLO))

    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "streamed after all"
    complete = events[-1]
    assert isinstance(complete, StreamComplete)
    assert [a.code for a in complete.response.attempts] == [code, None]
    assert len(server.requests) == 2


async def test_a_stream_cut_after_text_went_out_is_not_retried(
    server: OpenAICompatibleServer, model: OpenAIModel, waits: Waits
) -> None:
    server.add_fault(Fault.cut_stream(3))
    server.add_reply("one two three four five")
    seen: list[StreamEvent] = []
    with pytest.raises(ModelConnectionError) as caught:
        await collect_into(retrying(model, waits).stream(HELLO), seen)

    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["one ", "two "]
    assert [a.code for a in caught.value.attempts] == ["model_connection_error"]
    assert len(server.requests) == 1


async def test_an_attempt_past_its_timeout_is_retried(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_fault(Fault.delay(5.0))
    server.add_reply("on time")
    policy = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.01, attempt_timeout_s=0.3)
    response = await Retrying(model, policy).request(HELLO)  # real time: 0.3 s

    assert response.message.content == "on time"
    assert [a.code for a in response.attempts] == ["model_timeout", None]
    assert response.attempts[0].latency_ms >= 300.0
    assert len(server.requests) == 2


async def test_the_provider_timeout_counts_as_a_retryable_timeout(
    server: OpenAICompatibleServer, model: OpenAIModel, waits: Waits
) -> None:
    server.add_fault(Fault.delay(5.0))
    request = HELLO.__class__(messages=HELLO.messages, settings=ModelSettings(timeout_s=0.2))
    with pytest.raises(ModelTimeoutError) as caught:
        await retrying(model, waits, RetryPolicy(max_attempts=1)).request(request)
    assert caught.value.retryable
    assert len(caught.value.attempts) == 1


# -- not retried -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.status(400), "model_bad_request"),
        (Fault.status(403), "model_permission_denied"),
        (Fault.status(404), "model_not_found"),
        (Fault.context_window(), "model_context_window"),
        (
            Fault.status(400, body={"error": {"message": "blocked", "code": "content_filter"}}),
            "model_content_policy",
        ),
    ],
    ids=["400", "403", "404", "context-window", "content-policy"],
)
async def test_a_rejected_request_reaches_the_server_once(
    server: OpenAICompatibleServer, model: OpenAIModel, waits: Waits, fault: Fault, code: str
) -> None:
    server.add_fault(fault)
    with pytest.raises(ModelError) as caught:
        await retrying(model, waits).request(HELLO)

    assert caught.value.code == code
    assert not caught.value.retryable
    assert len(server.requests) == 1
    assert waits.seconds == []


async def test_a_bad_api_key_is_not_retried(server: OpenAICompatibleServer, waits: Waits) -> None:
    wrong = OpenAIModel("gpt-test", base_url=server.base_url, api_key="sk-wrong", timeout_s=5)
    try:
        with pytest.raises(ModelError) as caught:
            await retrying(wrong, waits).request(HELLO)
    finally:
        await wrong.aclose()
    assert caught.value.code == "model_authentication"
    assert len(server.requests) == 1


# -- a dead provider ---------------------------------------------------------------------------


async def test_a_failing_provider_opens_its_breaker_and_the_fallback_serves_until_it_recovers(
    server: OpenAICompatibleServer,
    backup_server: OpenAICompatibleServer,
    model: OpenAIModel,
    backup: OpenAIModel,
    waits: Waits,
) -> None:
    clock = FakeClock()
    board = MemoryBreakerBoard(BreakerPolicy(failure_threshold=3, cooldown_s=30.0), clock=clock)
    policy = RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.01, max_attempts=2)
    chain = Fallback(
        retrying(CircuitBreaker(model, board), waits, policy),
        retrying(CircuitBreaker(backup, board), waits, policy),
    )
    server.add_fault(*[Fault.status(500)] * 3)

    first = await chain.request(HELLO)  # two 500s, then the backup
    assert first.served_by == "openai:backup-model"
    second = await chain.request(HELLO)  # the third 500 opens the breaker: no second try
    assert [(a.code, a.skipped) for a in second.attempts] == [
        ("model_server_error", False),
        ("circuit_open", True),
        (None, False),
    ]
    assert (await board.status("openai:gpt-test")).state == "open"

    third = await chain.request(HELLO)  # refused at once: nothing reaches the dead server
    assert third.served_by == "openai:backup-model"
    assert third.attempts[0].skipped
    assert len(server.requests) == 3
    assert len(backup_server.requests) == 3

    clock.advance(30.0)  # the cooldown ends; the server works again
    server.add_reply("the primary is back")
    fourth = await chain.request(HELLO)  # the half-open probe succeeds
    assert fourth.served_by == "openai:gpt-test"
    assert fourth.message.content == "the primary is back"
    assert (await board.status("openai:gpt-test")).state == "closed"
    assert len(server.requests) == 4


async def test_a_stopped_server_opens_the_breaker_and_the_rules_model_serves() -> None:
    server = started_server()
    base_url = server.base_url
    server.stop()  # nothing listens there any more
    dead = OpenAIModel("gpt-test", base_url=base_url, api_key=API_KEY, timeout_s=5)
    board = MemoryBreakerBoard(BreakerPolicy(failure_threshold=2), clock=FakeClock())
    chain = Fallback(CircuitBreaker(dead, board), RulesModel())
    try:
        for _ in range(2):
            response = await chain.request(HELLO)
            assert response.served_by == "rules"
            assert response.attempts[0].code == "model_connection_error"
        response = await chain.request(HELLO)
    finally:
        await chain.aclose()

    assert response.served_by == "rules"
    assert response.attempts[0].skipped
    assert response.attempts[0].code == CircuitOpenError.code

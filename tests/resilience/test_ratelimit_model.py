"""RateLimitedModel: takes room in every bucket before a call, settles the tokens after it,
refuses without calling the model, and turns a provider's 429 into a penalty for everyone."""

from __future__ import annotations

import pytest

from keel._core.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamComplete,
    StreamEvent,
    UserMessage,
)
from keel._core.usage import Usage
from keel.errors import ConfigurationError, ModelHTTPError, RateLimitedError
from keel.resilience import (
    Fallback,
    LocalRateLimiter,
    RateLimit,
    RateLimitedModel,
    Retrying,
    RetryPolicy,
    estimate_prompt_tokens,
)
from keel.testing import FakeClock, ScriptedModel
from tests.resilience._resilience import Flaky, MidStream, TopRandom, http_error

MODEL = "model:scripted"
AGENT = "agent:support"
TPM = RateLimit(requests_per_minute=60, tokens_per_minute=10_000, on_limit="pause")
# 400 characters: 100 tokens, plus 4 for the message; and 200 tokens of answer at most.
PROMPT = ModelRequest(
    messages=[UserMessage(content="x" * 400)], settings=ModelSettings(max_tokens=200)
)
ESTIMATE = 304


def used(input_tokens: int, output_tokens: int) -> ModelResponse:
    return ModelResponse(
        message=AssistantMessage(content="done"),
        usage=Usage(requests=1, input_tokens=input_tokens, output_tokens=output_tokens),
    )


def setup(
    model: ScriptedModel | Flaky, *limits: tuple[str, RateLimit]
) -> tuple[RateLimitedModel, LocalRateLimiter, FakeClock]:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    return RateLimitedModel(model, limiter, limits or [(MODEL, TPM)]), limiter, clock


def test_the_estimate_is_the_prompt_plus_max_tokens() -> None:
    model, _, _ = setup(ScriptedModel([]))
    assert estimate_prompt_tokens(PROMPT) == 104
    assert model.estimate(PROMPT) == ESTIMATE


async def test_a_call_takes_the_estimate_then_settles_on_the_actual_usage() -> None:
    scripted = ScriptedModel([used(90, 30), "no usage reported"])
    model, limiter, _ = setup(scripted)
    response = await model.request(PROMPT)
    assert response.message.content == "done"
    assert limiter.levels(MODEL, TPM) == (59.0, 10_000 - 120)
    await model.request(PROMPT)  # reports no tokens: the estimate stands
    assert limiter.levels(MODEL, TPM) == (58.0, 10_000 - 120 - ESTIMATE)
    scripted.assert_complete()


async def test_a_refusal_raises_without_calling_the_model_and_gives_back_what_was_taken() -> None:
    scripted = ScriptedModel(["never sent"])
    agent_limit = RateLimit(requests_per_minute=1, scope="agent", on_limit="pause")
    model, limiter, _ = setup(scripted, (MODEL, TPM), (AGENT, agent_limit))
    await limiter.acquire(AGENT, agent_limit)  # the agent's one request a minute is used
    with pytest.raises(RateLimitedError) as caught:
        await model.request(PROMPT)
    error = caught.value
    assert (error.bucket, error.retry_after_s, error.on_limit) == (AGENT, 60.0, "pause")
    assert (error.code, error.model, error.retryable) == ("rate_limited", "scripted", True)
    assert [(a.code, a.skipped) for a in error.attempts] == [("rate_limited", True)]
    assert scripted.remaining == 1
    assert limiter.levels(MODEL, TPM) == (60.0, 10_000.0)


async def test_after_a_bounded_wait_the_refusal_is_final_not_retryable() -> None:
    limit = RateLimit(requests_per_minute=1, max_wait_s=5)
    model, _, clock = setup(ScriptedModel(["first"]), (MODEL, limit))
    await model.request(PROMPT)
    with pytest.raises(RateLimitedError) as caught:
        await model.request(PROMPT)
    assert (caught.value.on_limit, caught.value.retryable, clock.slept) == ("wait", False, 0)
    assert "past max_wait_s=5" in caught.value.message


async def test_a_call_larger_than_a_bucket_is_refused_with_the_reason_and_never_pauses() -> None:
    small = RateLimit(tokens_per_minute=300, on_limit="pause")
    model, _, _ = setup(ScriptedModel([]), (MODEL, small))
    with pytest.raises(RateLimitedError) as caught:
        await model.request(PROMPT)
    assert caught.value.retry_after_s is None
    assert not caught.value.retryable
    assert "needs 304 tokens but the bucket holds at most 300" in caught.value.message


async def test_a_429_penalizes_the_model_buckets_for_its_retry_after_and_is_raised() -> None:
    limit_429 = http_error(429, retry_after=20.0)
    agent_limit = RateLimit(requests_per_minute=60, scope="agent", on_limit="pause")
    model, limiter, _ = setup(
        ScriptedModel([limit_429, "never sent"]), (MODEL, TPM), (AGENT, agent_limit)
    )
    with pytest.raises(ModelHTTPError) as caught:
        await model.request(PROMPT)
    assert caught.value is limit_429
    # The provider's quota is the model's: the agent's bucket is not held back.
    assert (await limiter.acquire(AGENT, agent_limit)).granted
    with pytest.raises(RateLimitedError) as refused:
        await model.request(PROMPT)
    assert refused.value.bucket == MODEL
    # 20 s of penalty, then the bucket refills from empty: 304 tokens at 10 000 a minute.
    assert refused.value.retry_after_s == pytest.approx(20.0 + ESTIMATE * 60 / 10_000)


async def test_a_429_without_retry_after_penalizes_for_penalty_s() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    scripted = ScriptedModel([http_error(429)])
    model = RateLimitedModel(scripted, limiter, [(MODEL, TPM)], penalty_s=7.0)
    with pytest.raises(ModelHTTPError):
        await model.request(PROMPT)
    assert (await limiter.acquire(MODEL, TPM)).retry_after_s == pytest.approx(8.0)


async def test_other_failures_keep_the_estimate_and_penalize_nothing() -> None:
    model, limiter, _ = setup(ScriptedModel([http_error(503)]))
    with pytest.raises(ModelHTTPError):
        await model.request(PROMPT)
    assert limiter.levels(MODEL, TPM) == (59.0, 10_000 - ESTIMATE)


async def test_a_stream_settles_when_it_completes() -> None:
    model, limiter, _ = setup(Flaky(["streamed answer"]))
    events: list[StreamEvent] = [event async for event in model.stream(PROMPT)]
    assert isinstance(events[-1], StreamComplete)
    # Flaky's answers report 3 input and 2 output tokens.
    assert limiter.levels(MODEL, TPM) == (59.0, 10_000 - 5)


async def test_a_429_mid_stream_penalizes_too() -> None:
    model, limiter, _ = setup(Flaky([MidStream(http_error(429, retry_after=30.0))]))
    with pytest.raises(ModelHTTPError):
        async for _ in model.stream(PROMPT):
            pass
    assert (await limiter.acquire(MODEL, TPM)).retry_after_s == pytest.approx(31.0)


async def test_a_refused_stream_never_starts_the_model() -> None:
    flaky = Flaky(["never streamed"])
    limit = RateLimit(requests_per_minute=1, on_limit="pause")
    model, limiter, _ = setup(flaky, (MODEL, limit))
    await limiter.acquire(MODEL, limit)
    with pytest.raises(RateLimitedError):
        async for _ in model.stream(PROMPT):
            pass
    assert flaky.calls == 0


async def test_retrying_never_resends_a_rate_limit_refusal() -> None:
    limit = RateLimit(requests_per_minute=1, on_limit="pause")
    model, limiter, clock = setup(ScriptedModel([]), (MODEL, limit))
    await limiter.acquire(MODEL, limit)
    retrying = Retrying(model, RetryPolicy(max_attempts=5), clock=clock, sleep=clock.sleep)
    with pytest.raises(RateLimitedError) as caught:
        await retrying.request(PROMPT)
    assert len(caught.value.attempts) == 1
    assert clock.slept == 0


async def test_a_retry_after_a_429_waits_for_the_penalty_inside_retrying() -> None:
    scripted = ScriptedModel([http_error(429, retry_after=2.0), "after the penalty"])
    limit = RateLimit(requests_per_minute=60, max_wait_s=10)
    model, _, clock = setup(scripted, (MODEL, limit))
    retrying = Retrying(model, clock=clock, sleep=clock.sleep, rng=TopRandom())
    response = await retrying.request(PROMPT)
    assert response.message.content == "after the penalty"
    # Retrying waits the Retry-After (2 s), the bucket one more second to refill a request.
    assert clock.slept == pytest.approx(3.0)


async def test_a_fallback_answers_when_the_first_model_is_rate_limited() -> None:
    limit = RateLimit(requests_per_minute=1, on_limit="pause")
    first, limiter, clock = setup(ScriptedModel([], name="first"), (MODEL, limit))
    await limiter.acquire(MODEL, limit)
    chain = Fallback(first, ScriptedModel(["from the second"], name="second"), clock=clock)
    response = await chain.request(PROMPT)
    assert response.served_by == "second"
    assert [a.code for a in response.attempts] == ["rate_limited", None]


@pytest.mark.parametrize(
    "limits",
    [[("", TPM)], [(MODEL, "60/min")], [(MODEL,)]],
)
def test_bad_limits_are_refused(limits: list[tuple[object, ...]]) -> None:
    with pytest.raises(ConfigurationError, match="limits are \\(bucket name, RateLimit\\) pairs"):
        RateLimitedModel(ScriptedModel([]), LocalRateLimiter(), limits)  # type: ignore[arg-type]


def test_a_bad_penalty_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="penalty_s must be a finite number"):
        RateLimitedModel(ScriptedModel([]), LocalRateLimiter(), [], penalty_s=-1)

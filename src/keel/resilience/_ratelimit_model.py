"""A model whose calls take room in rate-limit buckets first.

::

    limiter = LocalRateLimiter()
    model = RateLimitedModel(
        OpenAIModel("gpt-4o"),
        limiter,
        [("model:openai:gpt-4o", RateLimit(requests_per_minute=500, tokens_per_minute=30_000))],
    )

Before each call, :class:`RateLimitedModel` acquires every bucket in order: one request and
the call's estimated tokens (the prompt's estimate plus ``settings.max_tokens``). When one
refuses, the room already taken from the others is given back and
:class:`keel.errors.RateLimitedError` is raised without calling the model, with the bucket,
``retry_after_s`` and ``on_limit``: with ``"pause"`` it is retryable (the run pauses and goes
on later), with ``"wait"`` the bounded wait is over and the call fails. Retry wrappers never
resend it (:class:`keel.resilience.Retrying` waits for nothing a limit already refused).

After the call, each bucket is corrected by the tokens the provider actually counted
(``usage.input_tokens + usage.output_tokens``; a response that reports none keeps the
estimate). When the provider refuses for its rate (HTTP 429), the buckets of ``scope="model"``
limits are penalized for its ``Retry-After`` (``penalty_s`` without one), so that every other
caller of the limiter backs off too, and the error is raised unchanged.

**Where it goes.** Inside :class:`keel.resilience.Retrying`, so that every retry takes room
too (and a retry after a 429 waits for the penalty to pass), and outside
:class:`keel.resilience.CircuitBreaker`, so that a refusal of Keel's own never counts against
the provider's health: ``Retrying(RateLimitedModel(CircuitBreaker(model), ...))``.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Sequence

from keel._core.messages import (
    Attempt,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
)
from keel.errors import ConfigurationError, ModelError, ModelHTTPError, RateLimitedError
from keel.ports import Model
from keel.resilience._attempts import aclose_stream
from keel.resilience._ratelimit import RateLimit, RateLimiter
from keel.resilience._wrapper import WrapperModel

__all__ = ["RateLimitedModel", "estimate_prompt_tokens", "is_rate_limited"]

# Roughly what the providers' tokenizers give for English text and JSON, and a few tokens of
# framing per message. An estimate only: adjust() settles the difference after the call.
_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4


def estimate_prompt_tokens(request: ModelRequest) -> int:
    """A rough count of the tokens ``request`` sends: its messages, tool calls, tool
    definitions and output schema, at about four characters a token."""
    chars = 0
    for message in request.messages:
        content = getattr(message, "content", None)
        chars += len(content) if isinstance(content, str) else 0
        for tool_call in getattr(message, "tool_calls", ()):
            chars += len(tool_call.name) + len(tool_call.arguments)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(dict(tool.parameters)))
    if request.output_schema is not None:
        chars += len(json.dumps(dict(request.output_schema)))
    return math.ceil(chars / _CHARS_PER_TOKEN) + _TOKENS_PER_MESSAGE * len(request.messages)


def is_rate_limited(error: ModelError) -> bool:
    """Whether ``error`` is the provider refusing for its rate (HTTP 429)."""
    return isinstance(error, ModelHTTPError) and error.status == 429


class RateLimitedModel(WrapperModel):
    """``model``, whose every call first takes room in ``limits`` on ``limiter``.

    Args:
        model: The model to call.
        limiter: Where the buckets live (:class:`keel.resilience.LocalRateLimiter`, or
            ``RedisRateLimiter`` to share them between processes).
        limits: ``(bucket, limit)`` pairs, acquired in order; see :meth:`RateLimit.bucket_for`
            for the names.
        estimate_tokens: Estimates a request's prompt tokens (default:
            :func:`estimate_prompt_tokens`); ``settings.max_tokens`` is added to it.
        penalty_s: How long a provider's 429 without ``Retry-After`` holds the model's buckets
            empty.

    ``name`` is the wrapped model's; ``aclose`` closes the model, not the limiter, which may
    serve other models: close it where it was made.
    """

    def __init__(
        self,
        model: Model,
        limiter: RateLimiter,
        limits: Sequence[tuple[str, RateLimit]],
        *,
        estimate_tokens: Callable[[ModelRequest], int] = estimate_prompt_tokens,
        penalty_s: float = 5.0,
    ) -> None:
        pairs = list(limits)
        for pair in pairs:
            if (
                not isinstance(pair, tuple)
                or len(pair) != 2
                or not isinstance(pair[0], str)
                or not pair[0]
                or not isinstance(pair[1], RateLimit)
            ):
                raise ConfigurationError(
                    f"RateLimitedModel limits are (bucket name, RateLimit) pairs, e.g. "
                    f"('model:openai:gpt-4o', RateLimit(requests_per_minute=60)); got {pair!r}"
                )
        if not math.isfinite(penalty_s) or penalty_s < 0:
            raise ConfigurationError(
                f"penalty_s must be a finite number of seconds, 0 or more, got {penalty_s!r}"
            )
        super().__init__(model)
        self._limiter = limiter
        self._limits = tuple(pairs)
        self._estimate = estimate_tokens
        self._penalty_s = float(penalty_s)

    def __repr__(self) -> str:
        buckets = [bucket for bucket, _ in self._limits]
        return f"RateLimitedModel({self._model!r}, buckets={buckets!r})"

    @property
    def limits(self) -> tuple[tuple[str, RateLimit], ...]:
        """The ``(bucket, limit)`` pairs every call acquires."""
        return self._limits

    @property
    def limiter(self) -> RateLimiter:
        """Where the buckets live."""
        return self._limiter

    def estimate(self, request: ModelRequest) -> int:
        """The tokens a call of ``request`` takes up front: the prompt's estimate plus
        ``settings.max_tokens``."""
        prompt = max(0, int(self._estimate(request)))
        return prompt + (request.settings.max_tokens or 0)

    async def _admit(self, request: ModelRequest) -> int:
        """Take room in every bucket; return the tokens taken, or raise RateLimitedError."""
        tokens = self.estimate(request)
        taken: list[tuple[str, RateLimit]] = []
        for bucket, limit in self._limits:
            try:
                got = await self._limiter.acquire(bucket, limit, tokens=tokens)
            except BaseException:
                await self._give_back(taken, tokens)
                raise
            if got.granted:
                taken.append((bucket, limit))
                continue
            await self._give_back(taken, tokens)
            error = RateLimitedError(
                self.name,
                bucket=bucket,
                retry_after_s=got.retry_after_s,
                on_limit=limit.on_limit,
                reason=got.reason,
            )
            error.attempts = (
                Attempt(model=self.name, code=error.code, message=error.message, skipped=True),
            )
            raise error
        return tokens

    async def _give_back(self, taken: Sequence[tuple[str, RateLimit]], tokens: int) -> None:
        # The call is not made: the buckets already passed get their room back.
        for bucket, limit in taken:
            await self._limiter.adjust(bucket, limit, tokens=-tokens, requests=-1)

    async def _settle(self, response: ModelResponse, estimated: int) -> None:
        actual = response.usage.input_tokens + response.usage.output_tokens
        if not actual or actual == estimated:
            return  # no usage reported: the estimate stands
        for bucket, limit in self._limits:
            if limit.tokens_per_minute is not None:
                await self._limiter.adjust(bucket, limit, tokens=actual - estimated)

    async def _failed(self, error: ModelError) -> None:
        if not is_rate_limited(error):
            return
        wait = error.retry_after if error.retry_after is not None else self._penalty_s
        for bucket, limit in self._limits:
            # The provider's quota is per model (and account), not per agent or tenant.
            if limit.scope == "model":
                await self._limiter.penalize(bucket, wait)

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Take room in every bucket, call the model, settle the tokens it used."""
        estimated = await self._admit(request)
        try:
            response = await self._model.request(request)
        except ModelError as error:
            await self._failed(error)
            raise
        await self._settle(response, estimated)
        return response

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Take room in every bucket, then stream from the model; the tokens are settled when
        the stream completes."""
        estimated = await self._admit(request)
        events = self._model.stream(request)
        try:
            async for event in events:
                if isinstance(event, StreamComplete):
                    await self._settle(event.response, estimated)
                yield event
        except ModelError as error:
            await self._failed(error)
            raise
        finally:
            await aclose_stream(events)

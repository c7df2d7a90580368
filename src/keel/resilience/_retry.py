"""Retrying a model call: exponential backoff with full jitter, ``Retry-After``, timeouts and an
overall deadline.

:class:`Retrying` wraps any :class:`keel.ports.Model` and sends a failed request again when
the failure says it may help, and only then::

    model = Retrying(OpenAIModel("gpt-4o-mini"), RetryPolicy(max_attempts=4, deadline_s=60))

**What is retried.** A :class:`keel.errors.ModelError` with ``retryable=True``: timeouts,
connection failures, HTTP 408, 409, 429 and 5xx, malformed or cut-off answers. Never a
request the provider rejected (400, 401, 403, 404, a prompt longer than the context window, a
content-policy refusal: the same request would fail the same way), never a
:class:`keel.errors.CircuitOpenError` (the breaker exists so that nobody calls the model for a
while), never a :class:`keel.errors.RateLimitedError` (a rate limit of Keel's own already
waited as long as it allows; with ``on_limit="pause"`` the run pauses instead), and never an
exception that is not a ``ModelError`` (a bug, a cancellation).

**How long it waits.** Before retry ``n`` (0 for the first) it sleeps a random time in
``[0, min(max_backoff_s, initial_backoff_s * multiplier**n)]`` ("full jitter", which spreads
the retries of many clients that failed together instead of sending them back in waves). When
the provider said how long to wait (``ModelError.retry_after``, from ``Retry-After`` or
``retry-after-ms``), it waits at least that; a hint longer than ``max_retry_after_s`` is not
waited for at all: the call gives up at once, so that a fallback model can answer meanwhile.

**Time limits.** ``deadline_s`` bounds the whole call, backoff included: no backoff that would
end past it is started, and no attempt starts after it; the call gives up instead, raising the
last error. ``attempt_timeout_s`` bounds each attempt, and then also cuts an attempt at the
deadline: an attempt past either is cancelled and counts as a
:class:`keel.errors.ModelTimeoutError` (retryable, so the deadline decides whether another
attempt fits). Without ``attempt_timeout_s`` (the default) an attempt lasts as long as the
provider's own timeouts allow, e.g. ``OpenAIModel(timeout_s=...)``. For
:meth:`Retrying.stream` the limits bound the wait for the stream's *first* event: once an
event has been passed on, nothing can be retried, and the stream runs as long as the provider
keeps it going.

**What the caller learns.** Every attempt is recorded as a
:class:`keel._core.messages.Attempt` (the model, the error code and message, its latency and the
backoff slept before it). A successful response carries them all in ``attempts``, the last one
being the one that answered, and ``served_by`` names the model that answered. When it gives up,
the *last* error is raised, unchanged in type, code and message, with ``error.attempts`` set to
every attempt. Attempts already recorded by a wrapped model (a
:class:`keel.resilience.Fallback` inside, a breaker that skipped the call) are kept and
appended, not replaced.

Time, sleep and randomness are injected (``clock``, ``sleep``, ``rng``), so tests run the whole
schedule on a :class:`keel.testing.FakeClock` without waiting. ``sleep`` waits out both the
backoffs and the attempt time limits: with a sleeper that returns at once, an attempt that
awaits anything real (a network call) hits its ``attempt_timeout_s`` at once.

Why this loop is Keel's own rather than tenacity's or stamina's:
``docs/decisions/0011-retries.md``.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from keel._core.messages import (
    Attempt,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
)
from keel.errors import (
    CircuitOpenError,
    ConfigurationError,
    ModelError,
    ModelResponseError,
    ModelTimeoutError,
    RateLimitedError,
)
from keel.ports import Clock, Model, SystemClock
from keel.resilience._attempts import (
    Sleeper,
    aclose_stream,
    attempts_from_error,
    attempts_from_response,
    ms,
    time_limit,
)
from keel.resilience._wrapper import WrapperModel

__all__ = ["RetryPolicy", "Retrying"]


def _finite(name: str, value: float, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"RetryPolicy.{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise ConfigurationError(
            f"RetryPolicy.{name} must be a finite number {bound}, got {value!r}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How :class:`Retrying` retries; every field has a finite default.

    Attributes:
        max_attempts: Attempts in all, the first included (1 means no retry).
        initial_backoff_s: Upper bound of the jittered wait before the first retry.
        max_backoff_s: The bound never grows past this.
        multiplier: The bound grows by this factor after each retry.
        attempt_timeout_s: Time limit of one attempt (``None``: only the deadline bounds it).
        deadline_s: Time limit of the whole call, backoff included.
        max_retry_after_s: A provider's ``Retry-After`` longer than this ends the retries at
            once instead of being waited for.
    """

    max_attempts: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    multiplier: float = 2.0
    attempt_timeout_s: float | None = None
    deadline_s: float = 120.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigurationError(
                f"RetryPolicy.max_attempts must be an int of at least 1 (1 means no retry), "
                f"got {self.max_attempts!r}"
            )
        _finite("initial_backoff_s", self.initial_backoff_s)
        _finite("max_backoff_s", self.max_backoff_s)
        if self.max_backoff_s < self.initial_backoff_s:
            raise ConfigurationError(
                f"RetryPolicy.max_backoff_s ({self.max_backoff_s!r}) must be at least "
                f"initial_backoff_s ({self.initial_backoff_s!r})"
            )
        _finite("multiplier", self.multiplier)
        if self.multiplier < 1:
            raise ConfigurationError(
                f"RetryPolicy.multiplier must be at least 1 (waits never shrink), "
                f"got {self.multiplier!r}"
            )
        if self.attempt_timeout_s is not None:
            _finite("attempt_timeout_s", self.attempt_timeout_s, positive=True)
        _finite("deadline_s", self.deadline_s, positive=True)
        _finite("max_retry_after_s", self.max_retry_after_s)

    def backoff_cap(self, retry: int) -> float:
        """The upper bound of the jittered wait before retry number ``retry`` (0 is the first):
        ``min(max_backoff_s, initial_backoff_s * multiplier**retry)``."""
        try:
            bound = self.initial_backoff_s * self.multiplier**retry
        except OverflowError:
            bound = math.inf
        return min(self.max_backoff_s, bound)


class _Tries:
    """The bookkeeping of one call through :class:`Retrying`: attempts, waits, the deadline."""

    def __init__(self, owner: Retrying) -> None:
        self._owner = owner
        self._policy = owner.policy
        self._clock = owner._clock
        self.started = self._clock.monotonic()
        self.deadline = self.started + self._policy.deadline_s
        self.attempts: list[Attempt] = []
        self.failures = 0
        self.waited = 0.0
        self.attempt_started = self.started

    def begin(self) -> float | None:
        """Start an attempt; return its time limit (``None``: none)."""
        self.attempt_started = now = self._clock.monotonic()
        timeout = self._policy.attempt_timeout_s
        return None if timeout is None else min(timeout, max(0.0, self.deadline - now))

    def timeout_error(self, limit: float | None) -> ModelTimeoutError:
        """The error for an attempt that ran out of time."""
        name = self._owner.name
        policy = self._policy
        if limit is None:
            why = "timed out"
        elif policy.attempt_timeout_s is not None and limit >= policy.attempt_timeout_s:
            why = f"did not answer within attempt_timeout_s={limit:g}s"
        else:
            why = (
                f"did not answer before the retry deadline (deadline_s={policy.deadline_s:g}s, "
                f"{limit:g}s were left for this attempt)"
            )
        return ModelTimeoutError(
            f"model '{name}' {why}; raise the limit in RetryPolicy or check the provider's load",
            model=name,
        )

    def _latency_ms(self) -> float:
        return ms(self._clock.monotonic() - self.attempt_started)

    def _record(self, error: ModelError) -> None:
        self.attempts.extend(
            attempts_from_error(
                error,
                model=self._owner.name,
                latency_ms=self._latency_ms(),
                waited_ms=ms(self.waited),
            )
        )

    def failed(self, error: ModelError) -> float | None:
        """Record a failed attempt; return how long to wait before the next one, or ``None``
        to give up (then ``error.attempts`` holds every attempt)."""
        self._record(error)
        self.failures += 1
        delay = self._delay(error)
        if delay is None:
            error.attempts = tuple(self.attempts)
            return None
        self.waited = delay
        return delay

    def gave_up(self, error: ModelError) -> None:
        """Record an attempt that failed where no retry is possible (mid-stream)."""
        self._record(error)
        error.attempts = tuple(self.attempts)

    def _delay(self, error: ModelError) -> float | None:
        policy = self._policy
        # Refusals that come before any call: resending at once would be refused again.
        if not error.retryable or isinstance(error, CircuitOpenError | RateLimitedError):
            return None
        if self.failures >= policy.max_attempts:
            return None
        hint = error.retry_after
        if hint is not None and hint > policy.max_retry_after_s:
            return None
        delay = self._owner._rng.uniform(0.0, policy.backoff_cap(self.failures - 1))
        if hint is not None:
            delay = max(delay, hint)
        if self._clock.monotonic() + delay >= self.deadline:
            return None
        return delay

    def succeeded(self, response: ModelResponse) -> ModelResponse:
        """Record the attempt that answered; return the response with every attempt."""
        name = self._owner.name
        self.attempts.extend(
            attempts_from_response(
                response, model=name, latency_ms=self._latency_ms(), waited_ms=ms(self.waited)
            )
        )
        return replace(
            response, attempts=tuple(self.attempts), served_by=response.served_by or name
        )


class Retrying(WrapperModel):
    """A model that retries the calls of ``model`` that failed in a retryable way.

    See the module documentation for what is retried, how long it waits and what it reports.
    ``clock`` (default: the system clock) measures latencies and the deadline, ``sleep``
    (default: :func:`asyncio.sleep`) waits out backoffs and attempt time limits, and ``rng``
    (default: a fresh ``random.Random()``) draws the jitter. ``name`` is the wrapped model's.
    """

    def __init__(
        self,
        model: Model,
        policy: RetryPolicy | None = None,
        *,
        clock: Clock | None = None,
        sleep: Sleeper | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(model)
        self._policy = policy if policy is not None else RetryPolicy()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._sleep: Sleeper = sleep if sleep is not None else asyncio.sleep
        self._rng = rng if rng is not None else random.Random()

    def __repr__(self) -> str:
        return f"Retrying({self._model!r}, {self._policy!r})"

    @property
    def policy(self) -> RetryPolicy:
        """How this wrapper retries."""
        return self._policy

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send ``request``, retrying retryable failures; see the module documentation."""
        tries = _Tries(self)
        while True:
            limit = tries.begin()
            try:
                async with time_limit(limit, self._sleep):
                    response = await self._model.request(request)
            except ModelError as error:
                failure: ModelError = error
            except TimeoutError:
                failure = tries.timeout_error(limit)
            else:
                return tries.succeeded(response)
            delay = tries.failed(failure)
            if delay is None:
                raise failure
            await self._sleep(delay)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream ``request``, retrying retryable failures until the first event is passed on.

        A failure after that is raised (with ``attempts``), since the caller has already seen
        part of an answer that a new attempt would not repeat.
        """
        tries = _Tries(self)
        while True:
            limit = tries.begin()
            events = self._model.stream(request)
            try:
                async with time_limit(limit, self._sleep):
                    first: StreamEvent = await anext(events)
            except ModelError as error:
                failure: ModelError = error
            except TimeoutError:
                failure = tries.timeout_error(limit)
            except StopAsyncIteration:
                failure = ModelResponseError(
                    f"the stream of model '{self.name}' ended without any event; the request "
                    "can be retried",
                    model=self.name,
                )
            except BaseException:
                await aclose_stream(events)
                raise
            else:
                break
            await aclose_stream(events)
            delay = tries.failed(failure)
            if delay is None:
                raise failure
            await self._sleep(delay)
        event = first
        try:
            while True:
                if isinstance(event, StreamComplete):
                    yield StreamComplete(response=tries.succeeded(event.response))
                else:
                    yield event
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
        except ModelError as error:
            tries.gave_up(error)
            raise
        finally:
            await aclose_stream(events)

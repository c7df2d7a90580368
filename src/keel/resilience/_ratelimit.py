"""Rate limits of Keel's own: token buckets that keep model calls under a provider's quota.

::

    limiter = LocalRateLimiter()
    limit = RateLimit(requests_per_minute=60, tokens_per_minute=90_000)
    granted = await limiter.acquire("model:openai:gpt-4o", limit, tokens=1_200)

**Buckets.** A bucket holds up to the per-minute amount (its *capacity*: a full minute's worth
may go at once, a burst) and refills continuously at that amount per minute. A limit may count
requests, tokens, or both; every acquisition takes one request and the tokens it says it will
use. When the call is over, :meth:`RateLimiter.adjust` corrects the tokens by what the
provider actually counted (more: the bucket goes into debt; fewer: they are given back).

**Waiting.** With ``on_limit="wait"`` an acquisition waits (through the injected clock's
``sleep``) for room, up to ``max_wait_s``; a wait that would end later is not started at all.
With ``on_limit="pause"`` it gives up at once, so the run can pause and go on later. Either way
a refusal says when the bucket will have room (``retry_after_s``). A request larger than the
bucket's capacity is refused at once, since no wait would ever make room for it.

**Penalties.** A provider's 429 means its own count and ours disagree. :meth:`RateLimiter.penalize`
empties the bucket and stops its refill until the provider's ``Retry-After`` has passed; then
it refills from empty at its normal rate, so that the callers held back resume one by one
rather than all at once. Shared through Redis, the penalty holds back every process.

**Buckets are named by the caller**, one per scope: ``model:openai:gpt-4o``,
``agent:support``, ``tenant:acme`` (:meth:`RateLimit.bucket_for` builds the name). Two limiters:
:class:`LocalRateLimiter` (this process) and ``RedisRateLimiter`` (shared by every process and
host, in :mod:`keel.resilience._ratelimit_redis`).
"""

from __future__ import annotations

import abc
import math
import threading
from dataclasses import dataclass
from typing import Literal

from keel.errors import ConfigurationError
from keel.ports import Clock, SystemClock

__all__ = [
    "Acquisition",
    "LocalRateLimiter",
    "OnLimit",
    "RateLimit",
    "RateLimitScope",
    "RateLimiter",
]

RateLimitScope = Literal["model", "agent", "tenant"]
"""What a limit counts: the calls to one model, of one agent, or for one tenant."""

OnLimit = Literal["wait", "pause"]
"""What a call does when the bucket is empty: ``wait`` up to ``max_wait_s``, or ``pause`` (give
up at once, so the run pauses)."""

_SCOPES = ("model", "agent", "tenant")
_ON_LIMIT = ("wait", "pause")
# Below this a deficit is floating-point noise: a caller that slept exactly the time it was
# told must get through.
_EPSILON = 1e-9


def _per_minute(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"RateLimit.{name} must be an int of at least 1 (or None: not limited), got {value!r}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """One rate limit: a token bucket per model, agent or tenant.

    Attributes:
        requests_per_minute: Requests allowed per minute, and the burst (``None``: not
            counted).
        tokens_per_minute: Tokens (input and output) allowed per minute, and the burst
            (``None``: not counted).
        scope: What is counted together: calls to one ``model``, of one ``agent``, or for one
            ``tenant``.
        key: ``None``: one bucket for each model (agent, tenant); a name: only that one is
            limited.
        max_wait_s: How long a call may wait for room with ``on_limit="wait"``.
        on_limit: ``"wait"`` (up to ``max_wait_s``, then give up) or ``"pause"`` (give up at
            once, so the run pauses).
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    scope: RateLimitScope = "model"
    key: str | None = None
    max_wait_s: float = 10.0
    on_limit: OnLimit = "wait"

    def __post_init__(self) -> None:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ConfigurationError(
                "RateLimit needs requests_per_minute or tokens_per_minute (or both); with "
                "neither it would limit nothing"
            )
        _per_minute("requests_per_minute", self.requests_per_minute)
        _per_minute("tokens_per_minute", self.tokens_per_minute)
        if self.scope not in _SCOPES:
            raise ConfigurationError(
                f"RateLimit.scope must be one of {', '.join(_SCOPES)}, got {self.scope!r}"
            )
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ConfigurationError(
                f"RateLimit.key must be a non-empty name (or None: every {self.scope}), "
                f"got {self.key!r}"
            )
        wait = self.max_wait_s
        if (
            isinstance(wait, bool)
            or not isinstance(wait, int | float)
            or not math.isfinite(wait)
            or wait < 0
        ):
            raise ConfigurationError(
                f"RateLimit.max_wait_s must be a finite number of seconds, 0 or more, got {wait!r}"
            )
        if self.on_limit not in _ON_LIMIT:
            raise ConfigurationError(
                f"RateLimit.on_limit must be 'wait' or 'pause', got {self.on_limit!r}"
            )

    def bucket_for(self, name: str) -> str | None:
        """The bucket this limit puts ``name`` (a model, agent or tenant, per ``scope``) in,
        e.g. ``model:openai:gpt-4o``; ``None`` when the limit is for another ``key``."""
        if self.key is not None and name != self.key:
            return None
        return f"{self.scope}:{name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Acquisition:
    """What an acquisition got.

    ``granted`` says whether the call may go ahead (the request and tokens are taken).
    Otherwise ``retry_after_s`` says when the bucket will have room (``None``: never, the
    request is larger than the bucket) and ``reason`` why it was refused. ``waited_s`` is the
    time spent waiting, by the limiter's clock.
    """

    granted: bool
    bucket: str
    retry_after_s: float | None = None
    waited_s: float = 0.0
    reason: str = ""


def over_capacity(limit: RateLimit, tokens: int) -> str:
    """Why a request for ``tokens`` can never fit ``limit`` (``""`` if it can)."""
    cap = limit.tokens_per_minute
    if cap is not None and tokens > cap:
        return (
            f"the call needs {tokens} tokens but the bucket holds at most {cap} "
            f"(tokens_per_minute={cap}); raise tokens_per_minute or lower max_tokens"
        )
    return ""


def check_tokens(tokens: int) -> None:
    """Refuse a token count that is not an int of 0 or more."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ConfigurationError(f"tokens must be an int of 0 or more, got {tokens!r}")


@dataclass(slots=True)
class Bucket:
    """A bucket's levels (they go below 0 when a call used more than it said) and ``at``: the
    time its levels were computed, or while it is penalized, the time its refill resumes.

    The Redis limiter's Lua scripts do the same arithmetic; keep them in step.
    """

    requests: float
    tokens: float
    at: float

    @classmethod
    def full(cls, limit: RateLimit, now: float) -> Bucket:
        """A bucket never used (or idle long enough to be full again)."""
        return cls(float(limit.requests_per_minute or 0), float(limit.tokens_per_minute or 0), now)

    def refill(self, limit: RateLimit, now: float) -> None:
        """Add what flowed in since ``at``; nothing while penalized. A level above a (lowered)
        capacity is cut to it."""
        elapsed = max(0.0, now - self.at)
        rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
        if rpm is not None:
            self.requests = min(float(rpm), self.requests + elapsed * rpm / 60.0)
        if tpm is not None:
            self.tokens = min(float(tpm), self.tokens + elapsed * tpm / 60.0)
        self.at = max(self.at, now)

    def wait(self, limit: RateLimit, now: float, tokens: int) -> float:
        """Seconds until one request and ``tokens`` fit (0: they fit now); call after
        :meth:`refill`."""
        needed = 0.0
        rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
        if rpm is not None:
            needed = max(needed, (1.0 - self.requests) * 60.0 / rpm)
        if tpm is not None and tokens:
            needed = max(needed, (tokens - self.tokens) * 60.0 / tpm)
        penalty = max(0.0, self.at - now)
        if needed <= _EPSILON and penalty <= 0:
            return 0.0
        return penalty + max(0.0, needed)

    def take(self, limit: RateLimit, requests: float, tokens: float) -> None:
        """Take (negative: give back) requests and tokens, never above capacity."""
        rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
        if rpm is not None:
            self.requests = min(float(rpm), self.requests - requests)
        if tpm is not None:
            self.tokens = min(float(tpm), self.tokens - tokens)

    def penalize(self, until: float) -> None:
        """Empty the bucket (keeping any debt) and stop its refill until ``until``."""
        self.requests = min(self.requests, 0.0)
        self.tokens = min(self.tokens, 0.0)
        self.at = max(self.at, until)

    def full_at(self, limit: RateLimit | None) -> float:
        """When the bucket is full again, so that forgetting it changes nothing. A capacity
        refills in one minute; unknown rates (a penalty before any call) count as empty."""
        if limit is None:
            return self.at + 60.0
        gaps = [0.0]
        rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
        if rpm is not None:
            gaps.append((rpm - self.requests) * 60.0 / rpm)
        if tpm is not None:
            gaps.append((tpm - self.tokens) * 60.0 / tpm)
        return self.at + max(gaps)


class RateLimiter(abc.ABC):
    """Where token buckets live; one limiter serves any number of buckets and limits.

    Subclasses implement one non-waiting attempt (:meth:`_take`), :meth:`adjust`,
    :meth:`penalize` and :meth:`aclose`; :meth:`acquire` does the waiting, on ``clock``.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()

    @abc.abstractmethod
    async def _take(self, bucket: str, limit: RateLimit, tokens: int) -> float:
        """Take one request and ``tokens`` if they fit now and return 0.0; else take nothing
        and return the seconds until they fit (always more than 0)."""

    async def acquire(self, bucket: str, limit: RateLimit, *, tokens: int = 0) -> Acquisition:
        """Take one request and ``tokens`` tokens from ``bucket`` under ``limit``, waiting for
        room up to ``limit.max_wait_s`` with ``on_limit="wait"``; see the module
        documentation. Refusals are returned, not raised."""
        check_tokens(tokens)
        reason = over_capacity(limit, tokens)
        if reason:
            return Acquisition(granted=False, bucket=bucket, reason=reason)
        clock = self._clock
        started = clock.monotonic()
        while True:
            retry_after = await self._take(bucket, limit, tokens)
            waited = clock.monotonic() - started
            if retry_after <= 0:
                return Acquisition(granted=True, bucket=bucket, waited_s=waited)
            if limit.on_limit == "pause" or waited + retry_after > limit.max_wait_s:
                why = (
                    f"it has room again in {retry_after:.3g}s"
                    if limit.on_limit == "pause"
                    else f"it has room again in {retry_after:.3g}s, past max_wait_s="
                    f"{limit.max_wait_s:g} (waited {waited:.3g}s)"
                )
                return Acquisition(
                    granted=False,
                    bucket=bucket,
                    retry_after_s=retry_after,
                    waited_s=waited,
                    reason=why,
                )
            # Another caller may take the room first (more so across processes): the loop
            # tries again, and the deadline above still bounds the whole wait.
            await clock.sleep(retry_after)

    @abc.abstractmethod
    async def adjust(
        self, bucket: str, limit: RateLimit, *, tokens: int, requests: int = 0
    ) -> None:
        """Correct what an acquisition took once the call is over: ``tokens`` is actual minus
        estimated (negative gives tokens back, positive takes more, possibly into debt), and
        ``requests`` likewise (``-1`` gives back the request of a call that was not made)."""

    @abc.abstractmethod
    async def penalize(self, bucket: str, retry_after_s: float) -> None:
        """The provider refused a call for its rate (HTTP 429): empty ``bucket`` and stop its
        refill for ``retry_after_s`` seconds, for every caller of this limiter."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections held by the limiter."""


def check_penalty(retry_after_s: float) -> float:
    """``retry_after_s`` as a finite number of 0 or more (a bad hint counts as 0)."""
    if isinstance(retry_after_s, bool) or not isinstance(retry_after_s, int | float):
        return 0.0
    if not math.isfinite(retry_after_s) or retry_after_s < 0:
        return 0.0
    return float(retry_after_s)


class LocalRateLimiter(RateLimiter):
    """Token buckets in this process's memory, on ``clock`` (default: the system clock).

    Refill is judged by ``clock.monotonic()``, so a wall-clock jump neither empties nor fills a
    bucket. Safe to share between tasks and threads: each operation is a short critical section
    that never awaits, under one lock. A bucket that has refilled to full is forgotten (checked
    now and then), so buckets per tenant do not pile up.
    """

    _SWEEP_EVERY = 1024

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self._buckets: dict[str, tuple[Bucket, RateLimit | None]] = {}
        self._lock = threading.Lock()
        self._operations = 0

    def __repr__(self) -> str:
        return f"LocalRateLimiter(buckets={len(self._buckets)})"

    def _load(self, bucket: str, limit: RateLimit, now: float) -> Bucket:
        # Sweep first: the bucket returned is about to change, and must stay in the dict.
        self._operations += 1
        if self._operations % self._SWEEP_EVERY == 0:
            self._sweep(now)
        found = self._buckets.get(bucket)
        state = Bucket.full(limit, now) if found is None else found[0]
        state.refill(limit, now)
        self._buckets[bucket] = (state, limit)
        return state

    def _sweep(self, now: float) -> None:
        for name, (state, limit) in list(self._buckets.items()):
            if state.full_at(limit) <= now:
                del self._buckets[name]

    async def _take(self, bucket: str, limit: RateLimit, tokens: int) -> float:
        with self._lock:
            now = self._clock.monotonic()
            state = self._load(bucket, limit, now)
            wait = state.wait(limit, now, tokens)
            if wait <= 0:
                state.take(limit, 1, tokens)
            return wait

    async def adjust(
        self, bucket: str, limit: RateLimit, *, tokens: int, requests: int = 0
    ) -> None:
        """Correct the tokens (and requests) an acquisition took."""
        with self._lock:
            now = self._clock.monotonic()
            self._load(bucket, limit, now).take(limit, requests, tokens)

    async def penalize(self, bucket: str, retry_after_s: float) -> None:
        """Empty ``bucket`` and stop its refill for ``retry_after_s`` seconds."""
        with self._lock:
            now = self._clock.monotonic()
            found = self._buckets.get(bucket)
            state, limit = found if found is not None else (Bucket(0.0, 0.0, now), None)
            state.penalize(now + check_penalty(retry_after_s))
            self._buckets[bucket] = (state, limit)

    def levels(self, bucket: str, limit: RateLimit) -> tuple[float, float]:
        """The requests and tokens ``bucket`` holds now under ``limit`` (full if unknown);
        negative while penalized or in debt. For tests and display."""
        with self._lock:
            now = self._clock.monotonic()
            found = self._buckets.get(bucket)
            state = Bucket.full(limit, now) if found is None else found[0]
            copy = Bucket(state.requests, state.tokens, state.at)
            copy.refill(limit, now)
            return copy.requests, copy.tokens

"""Rate limits around each model call: token buckets per model, agent or tenant.

Before a call, one request and the call's worst-case tokens (prompt estimate plus its output
bound) are taken from every bucket that applies; after it, the tokens are corrected to what
the call used. A bucket without room waits (up to the limit's ``max_wait_s``) or not at all
(``on_limit="pause"``); a call that still has no room is not made and the run pauses with a
reason naming the bucket (``rate_limited``), keeping its work for a resume. A provider's 429
that reaches the run (after the model's own retries) empties the model's bucket for its
``Retry-After``, for every caller sharing the limiter (every process, through Redis).
"""

from __future__ import annotations

from collections.abc import Sequence

from keel._core.eventbase import ErrorInfo
from keel._core.messages import ModelResponse
from keel._core.state import RunState
from keel._runtime.call_guards import CallGuard, CallPlan
from keel.errors import ModelError, ModelHTTPError
from keel.resilience import RateLimit, RateLimiter

__all__ = ["RunThrottle", "Throttling"]

# When a 429 gives no Retry-After, its bucket is emptied for this long.
_DEFAULT_PENALTY_S = 5.0


class Throttling:
    """The runtime's rate limits and the limiter that keeps their buckets."""

    def __init__(self, limits: Sequence[RateLimit], limiter: RateLimiter) -> None:
        self.limits = tuple(limits)
        self.limiter = limiter

    def guard_for(self, state: RunState) -> RunThrottle | None:
        """The guard of one run, or ``None`` when no limit is configured."""
        return RunThrottle(self) if self.limits else None


class RunThrottle(CallGuard):
    """The rate limits around one run's model calls."""

    def __init__(self, throttling: Throttling) -> None:
        self._throttling = throttling
        self._taken: list[tuple[str, RateLimit, int]] = []

    def _buckets(self, plan: CallPlan) -> list[tuple[str, RateLimit]]:
        state = plan.state
        found: list[tuple[str, RateLimit]] = []
        for limit in self._throttling.limits:
            if limit.scope == "model":
                name: str | None = plan.models[0] if plan.models else None
            elif limit.scope == "agent":
                name = state.agent
            else:
                name = state.tenant
            bucket = None if name is None else limit.bucket_for(name)
            if bucket is not None:
                found.append((bucket, limit))
        return found

    async def before(self, plan: CallPlan) -> ErrorInfo | None:
        limiter = self._throttling.limiter
        tokens = plan.prompt_tokens + plan.max_output_tokens
        self._taken = []
        for bucket, limit in self._buckets(plan):
            wanted = tokens if limit.tokens_per_minute is not None else 0
            got = await limiter.acquire(bucket, limit, tokens=wanted)
            if not got.granted:
                await self._give_back()
                return ErrorInfo(
                    code="rate_limited",
                    message=f"the rate limit '{bucket}' has no room for this call "
                    f"({got.reason}); the run is paused: resume it later",
                )
            self._taken.append((bucket, limit, wanted))
        return None

    async def _give_back(self) -> None:
        limiter = self._throttling.limiter
        for bucket, limit, tokens in self._taken:
            await limiter.adjust(bucket, limit, tokens=-tokens, requests=-1)
        self._taken = []

    async def after(
        self,
        plan: CallPlan,
        response: ModelResponse | None,
        cost: float | None,
        error: ModelError | None = None,
    ) -> None:
        limiter = self._throttling.limiter
        if response is None and error is None:
            await self._give_back()  # the call was not made after all
            return
        taken, self._taken = self._taken, []
        if response is not None:
            used = response.usage.input_tokens + response.usage.output_tokens
            for bucket, limit, tokens in taken:
                if tokens:
                    await limiter.adjust(bucket, limit, tokens=used - tokens)
            return
        if isinstance(error, ModelHTTPError) and error.status == 429:
            wait = error.retry_after if error.retry_after is not None else _DEFAULT_PENALTY_S
            for bucket, limit, _ in taken:
                # The provider's quota is per model (and account), not per agent or tenant.
                if limit.scope == "model":
                    await limiter.penalize(bucket, wait)

    async def finish(self) -> None:
        return None

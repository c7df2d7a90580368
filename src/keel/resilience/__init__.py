"""Reliable model calls by composition: wrappers that implement :class:`keel.ports.Model`.

::

    board = MemoryBreakerBoard(BreakerPolicy(failure_threshold=5, cooldown_s=30))
    model = Fallback(
        Retrying(CircuitBreaker(OpenAIModel("gpt-4o-mini"), board)),
        Retrying(CircuitBreaker(AnthropicModel("claude-3-5-haiku-latest"), board)),
        RulesModel(),
    )

- :class:`Retrying` (:mod:`keel.resilience._retry`): sends a request again after a retryable
  failure, with exponential backoff and full jitter, honouring ``Retry-After``, within
  per-attempt and overall time limits.
- :class:`CircuitBreaker` (:mod:`keel.resilience._breaker`): stops calling a model that keeps
  failing and lets a trial call through after a cooldown; its state lives on a
  :class:`BreakerBoard`, in memory or in Redis (:class:`RedisBreakerBoard`, shared by every
  process and host).
- :class:`Fallback` (:mod:`keel.resilience._fallback`): tries models in order until one
  answers.
- :class:`Caching` (:mod:`keel.resilience._cache`): answers repeated deterministic requests
  from a :class:`ResponseCache` (memory, SQLite or Redis) without calling the model.
- :class:`Router` (:mod:`keel.resilience._routing`): chooses a model per request by declared
  rules (:func:`short_input`, :func:`few_tools`, ...), so cheap models take simple work.
- :class:`RateLimitedModel` (:mod:`keel.resilience._ratelimit_model`): keeps calls under a
  :class:`RateLimit` (requests and tokens per minute, per model, agent or tenant), in token
  buckets on a :class:`RateLimiter`: in this process (:class:`LocalRateLimiter`) or in Redis
  (:class:`RedisRateLimiter`, shared by every process and host).

Every wrapper keeps the wrapped model's ``name`` (a fallback names its chain), passes
``stream`` and ``aclose`` through, and reports what happened on the response:
``served_by`` (the model that answered) and ``attempts`` (every try, failed ones first). When
a call fails for good, the error raised carries the same ``attempts``. Errors keep their retry
semantics (:class:`keel.errors.ModelError` ``retryable``, ``retry_after``), so no wrapper
parses messages.
"""

from keel.resilience._attempts import Sleeper
from keel.resilience._breaker import (
    BreakerBoard,
    BreakerPolicy,
    BreakerState,
    BreakerStatus,
    CircuitBreaker,
    MemoryBreakerBoard,
    RedisBreakerBoard,
    counts_as_failure,
)
from keel.resilience._cache import (
    CacheStats,
    Caching,
    MemoryResponseCache,
    RedisResponseCache,
    ResponseCache,
    SQLiteResponseCache,
)
from keel.resilience._fallback import Fallback
from keel.resilience._ratelimit import (
    Acquisition,
    LocalRateLimiter,
    OnLimit,
    RateLimit,
    RateLimiter,
    RateLimitScope,
)
from keel.resilience._ratelimit_model import (
    RateLimitedModel,
    estimate_prompt_tokens,
    is_rate_limited,
)
from keel.resilience._ratelimit_redis import RedisRateLimiter
from keel.resilience._retry import Retrying, RetryPolicy
from keel.resilience._routing import (
    Route,
    RouteContext,
    RoutePredicate,
    Router,
    all_of,
    any_of,
    few_tools,
    no_tools,
    short_input,
)
from keel.resilience._wrapper import WrapperModel

__all__ = [
    "Acquisition",
    "BreakerBoard",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStatus",
    "CacheStats",
    "Caching",
    "CircuitBreaker",
    "Fallback",
    "LocalRateLimiter",
    "MemoryBreakerBoard",
    "MemoryResponseCache",
    "OnLimit",
    "RateLimit",
    "RateLimitScope",
    "RateLimitedModel",
    "RateLimiter",
    "RedisBreakerBoard",
    "RedisRateLimiter",
    "RedisResponseCache",
    "ResponseCache",
    "RetryPolicy",
    "Retrying",
    "Route",
    "RouteContext",
    "RoutePredicate",
    "Router",
    "SQLiteResponseCache",
    "Sleeper",
    "WrapperModel",
    "all_of",
    "any_of",
    "counts_as_failure",
    "estimate_prompt_tokens",
    "few_tools",
    "is_rate_limited",
    "no_tools",
    "short_input",
]

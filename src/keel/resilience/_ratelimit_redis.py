"""Token buckets in Redis, shared by every process and host.

**Keys.** One hash per bucket, ``prefix + bucket``, with the fields ``r`` and ``t`` (the
requests and tokens it holds, below 0 in debt or while penalized) and ``at`` (when they were
computed, in seconds since the epoch; while penalized, when the refill resumes). Every write
sets the key to expire when the bucket would be full again (plus a second), so an idle bucket
vanishes exactly when forgetting it changes nothing: a missing key is a full bucket.

**Atomicity.** Each operation is one Lua script, run by Redis as one atomic step: an
acquisition refills, checks and takes in one round trip, so two processes asking for the last
request at once never both get it. Waiting happens here, in the client, using the
``retry_after`` the script returns, then asking again.

**Clock.** The scripts read the Redis server's clock (``TIME``), so hosts with different
clocks fill and drain one bucket at one rate. A ``clock`` passed to the limiter replaces it
(``clock.now()``), for tests on a fake clock; leave it unset in production. The waits always
use the limiter's clock (default: the system clock).

**When Redis fails.** With ``fail_open=True`` (the default, as for ``RedisBreakerBoard``) an
acquisition that cannot reach Redis is granted, and an adjustment or penalty is dropped, with a
warning on the ``keel.resilience`` logger: losing the limiter must not stop model calls, and
the provider's own limits (429, retried with its ``Retry-After``) still protect the account.
With ``fail_open=False`` the ``redis.RedisError`` (or ``OSError``) is raised.

Needs the ``redis`` package (``pip install 'keel-runtime[redis]'``), through ``redis.asyncio``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from keel.errors import ConfigurationError, MissingExtraError
from keel.ports import Clock
from keel.resilience._ratelimit import RateLimit, RateLimiter, check_penalty
from keel.resilience._redis import redis_client

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisRateLimiter"]

_log = logging.getLogger("keel.resilience")

# Shared by every script. ARGV[1]: the caller's time ('' for the server's clock), ARGV[2] and
# ARGV[3]: requests and tokens per minute ('' when not counted). The arithmetic is
# keel.resilience._ratelimit.Bucket's; keep them in step.
_PRELUDE = """
local function now_s()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local key = KEYS[1]
local now = now_s()
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local f = redis.call('HMGET', key, 'r', 't', 'at')
local r, t, at
if f[3] then
  r = tonumber(f[1]) or 0
  t = tonumber(f[2]) or 0
  at = tonumber(f[3])
else
  r = rpm or 0
  t = tpm or 0
  at = now
end
local elapsed = math.max(0, now - at)
if rpm then r = math.min(rpm, r + elapsed * rpm / 60) end
if tpm then t = math.min(tpm, t + elapsed * tpm / 60) end
at = math.max(at, now)
local function save()
  local full = at
  if rpm then full = math.max(full, at + (rpm - r) * 60 / rpm) end
  if tpm then full = math.max(full, at + (tpm - t) * 60 / tpm) end
  redis.call('HSET', key, 'r', fmt(r), 't', fmt(t), 'at', fmt(at))
  redis.call('PEXPIRE', key, tostring(math.ceil((full - now) * 1000) + 1000))
end
"""

# ARGV[4]: tokens. Returns '0' (taken) or the seconds until they fit.
_ACQUIRE = (
    _PRELUDE
    + """
local tokens = tonumber(ARGV[4])
local needed = 0
if rpm then needed = math.max(needed, (1 - r) * 60 / rpm) end
if tpm and tokens > 0 then needed = math.max(needed, (tokens - t) * 60 / tpm) end
local penalty = math.max(0, at - now)
if needed <= 1e-9 and penalty <= 0 then
  if rpm then r = r - 1 end
  if tpm then t = t - tokens end
  save()
  return '0'
end
return fmt(penalty + math.max(0, needed))
"""
)

# ARGV[4]: tokens to take (negative: give back), ARGV[5]: requests likewise.
_ADJUST = (
    _PRELUDE
    + """
if rpm then r = math.min(rpm, r - tonumber(ARGV[5])) end
if tpm then t = math.min(tpm, t - tonumber(ARGV[4])) end
save()
return 1
"""
)

# ARGV[1]: now ('' for the server's clock), ARGV[2]: retry_after_s. The rates are unknown here:
# the key lives a minute past the penalty, time enough for any bucket to refill from empty.
_PENALIZE = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local key = KEYS[1]
local f = redis.call('HMGET', key, 'r', 't', 'at')
local r = math.min(tonumber(f[1]) or 0, 0)
local t = math.min(tonumber(f[2]) or 0, 0)
local at = math.max(tonumber(f[3]) or now, now + tonumber(ARGV[2]))
redis.call('HSET', key, 'r', fmt(r), 't', fmt(t), 'at', fmt(at))
redis.call('PEXPIRE', key, tostring(math.ceil((at - now + 60) * 1000) + 1000))
return 1
"""


def _rate(value: int | None) -> str:
    return "" if value is None else str(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRateLimiter(RateLimiter):
    """Token buckets in Redis under ``prefix``, shared by every process using it.

    Args:
        url_or_client: A Redis URL (``redis://127.0.0.1:6379/0``), for which the limiter makes
            its own client and closes it in :meth:`aclose`; or a ``redis.asyncio.Redis``
            client, which stays the caller's to close.
        prefix: Put before every bucket's key.
        clock: Waits on this clock; its ``now()`` also replaces the Redis server's clock
            (tests only; see the module documentation).
        fail_open: Grant calls when Redis cannot be reached (logged), rather than fail.
    """

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        prefix: str = "keel:rl:",
        clock: Clock | None = None,
        fail_open: bool = True,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401 - checks that the extra is installed
            from redis.exceptions import RedisError
        except ImportError as exc:
            raise MissingExtraError(
                package="redis", extra="redis", feature="Rate limits shared through Redis"
            ) from exc
        if not prefix:
            raise ConfigurationError(
                "prefix must not be empty: the limiter's keys would mix with everything else in "
                "the database; use e.g. 'keel:rl:'"
            )
        super().__init__(clock=clock)
        self._prefix = prefix
        self._server_time = clock is None
        self._fail_open = fail_open
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._client, self._owns_client = redis_client(url_or_client)
        # register_script runs EVALSHA and loads the script on NOSCRIPT (a restarted server).
        self._acquire = self._client.register_script(_ACQUIRE)
        self._adjust = self._client.register_script(_ADJUST)
        self._penalize = self._client.register_script(_PENALIZE)

    def __repr__(self) -> str:
        return f"RedisRateLimiter(prefix={self._prefix!r})"

    @property
    def prefix(self) -> str:
        """What every key of this limiter starts with."""
        return self._prefix

    def _now(self) -> str:
        return "" if self._server_time else repr(self._clock.now())

    def _unreachable(self, what: str, bucket: str, error: BaseException) -> None:
        if not self._fail_open:
            raise error
        _log.warning(
            "rate limit bucket '%s': Redis could not be reached to %s (%s: %s); the call goes "
            "ahead without the limit",
            bucket,
            what,
            type(error).__name__,
            error,
        )

    async def _take(self, bucket: str, limit: RateLimit, tokens: int) -> float:
        args = [
            self._now(),
            _rate(limit.requests_per_minute),
            _rate(limit.tokens_per_minute),
            str(tokens),
        ]
        try:
            wait = await self._acquire(keys=[self._prefix + bucket], args=args)
        except self._errors as error:
            self._unreachable("take from it", bucket, error)
            return 0.0
        return float(_text(wait))

    async def adjust(
        self, bucket: str, limit: RateLimit, *, tokens: int, requests: int = 0
    ) -> None:
        """Correct the tokens (and requests) an acquisition took."""
        args = [
            self._now(),
            _rate(limit.requests_per_minute),
            _rate(limit.tokens_per_minute),
            str(int(tokens)),
            str(int(requests)),
        ]
        try:
            await self._adjust(keys=[self._prefix + bucket], args=args)
        except self._errors as error:
            self._unreachable("adjust it", bucket, error)

    async def penalize(self, bucket: str, retry_after_s: float) -> None:
        """Empty ``bucket`` and stop its refill for ``retry_after_s`` seconds, for every
        process."""
        args = [self._now(), repr(check_penalty(retry_after_s))]
        try:
            await self._penalize(keys=[self._prefix + bucket], args=args)
        except self._errors as error:
            self._unreachable("penalize it", bucket, error)

    async def levels(self, bucket: str) -> tuple[float, float, float] | None:
        """The raw stored ``(requests, tokens, at)`` of ``bucket`` (``None``: no key, a full
        bucket), as last written; for tests and display."""
        raw = await self._client.hmget(self._prefix + bucket, ["r", "t", "at"])
        if raw[2] is None:
            return None
        r, t, at = (float(_text(v)) for v in raw)
        return r, t, at

    async def aclose(self) -> None:
        """Close the Redis client if this limiter created it."""
        if self._owns_client:
            await self._client.aclose()

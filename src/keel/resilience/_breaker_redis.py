"""Circuit breakers whose state lives in Redis, shared by every process and host.

**Keys.** One hash per breaker, ``prefix + name``, with the fields ``state`` (``closed``,
``open``, ``half_open``), ``failures`` (in a row), ``window`` (the most recent outcomes, one
character each: ``1`` a failure, ``0`` a success, oldest first), ``opened_at`` and
``retry_at`` (seconds since the epoch), and ``trials`` (the start times of the trial calls in
flight, space-separated). A closed breaker with nothing to remember has no key at all. Every
write renews the key's expiry (``idle_ttl_s``, 7 days by default), so breakers of models no
longer used disappear by themselves.

**Atomicity.** Each operation (let a call through, record an outcome, give back a trial slot)
is one Lua script, run by Redis as one atomic step: two processes recording failures at once
both count, and exactly ``half_open_max_calls`` trials get through however many processes ask
together. A call costs two round trips (one before, one after).

**Clock.** The scripts read the Redis server's clock (``TIME``), so every host judges cooldowns
and trial timeouts by the same clock, whatever its own says. A ``clock`` passed to the board
replaces it (``clock.now()``), for tests on a fake clock; leave it unset in production.

**When Redis fails.** With ``fail_open=True`` (the default) a breaker that cannot reach Redis
lets calls through and drops their outcomes, logging a warning on the ``keel.resilience``
logger: losing the breaker must not stop model calls. ``status``, ``statuses`` and ``reset``
always raise ``redis.RedisError``.

Needs the ``redis`` package (``pip install 'keel-runtime[redis]'``), through ``redis.asyncio``.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any

from keel.errors import CircuitOpenError, ConfigurationError, MissingExtraError
from keel.ports import Clock
from keel.resilience._redis import redis_client

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from keel.resilience._breaker import BreakerPolicy, BreakerState, BreakerStatus

__all__ = ["RedisBreakerBoard"]

_log = logging.getLogger("keel.resilience")

_DEFAULT_IDLE_TTL_S = 7 * 24 * 3600.0

# Shared by every script: ARGV[1] is the caller's time ('' for the server's clock).
_PRELUDE = """
local function now_s()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
"""

# ARGV: now, half_open_max_calls, trial_timeout_s, idle_ttl_ms.
# Returns {1, '0'} to let the call through, {0, retry_in_s} to refuse it.
_BEFORE_CALL = (
    _PRELUDE
    + """
local key = KEYS[1]
local state = redis.call('HGET', key, 'state')
if not state or state == 'closed' then return {1, '0'} end
local now = now_s()
if state == 'open' then
  local retry_at = tonumber(redis.call('HGET', key, 'retry_at'))
  if now < retry_at then return {0, fmt(retry_at - now)} end
  redis.call('HSET', key, 'state', 'half_open', 'trials', '')
end
local max_calls = tonumber(ARGV[2])
local timeout = tonumber(ARGV[3])
local kept = {}
local oldest = nil
for item in string.gmatch(redis.call('HGET', key, 'trials') or '', '%S+') do
  local started = tonumber(item)
  if now - started < timeout then
    table.insert(kept, item)
    if oldest == nil or started < oldest then oldest = started end
  end
end
local refused = #kept >= max_calls
if not refused then table.insert(kept, fmt(now)) end
redis.call('HSET', key, 'trials', table.concat(kept, ' '))
redis.call('PEXPIRE', key, ARGV[4])
if refused then return {0, fmt(oldest + timeout - now)} end
return {1, '0'}
"""
)

# ARGV: now, ok ('1'/'0'), failure_threshold ('' none), failure_rate ('' none), window,
# min_calls, cooldown_s, idle_ttl_ms. Returns the new state.
_RECORD = (
    _PRELUDE
    + """
local key = KEYS[1]
local ok = ARGV[2] == '1'
local threshold = tonumber(ARGV[3])
local rate = tonumber(ARGV[4])
local size = tonumber(ARGV[5])
local state = redis.call('HGET', key, 'state') or 'closed'
local function open()
  local now = now_s()
  redis.call('HSET', key, 'state', 'open', 'opened_at', fmt(now),
             'retry_at', fmt(now + tonumber(ARGV[7])), 'trials', '')
  redis.call('PEXPIRE', key, ARGV[8])
  return 'open'
end
if state == 'open' then return state end
if state == 'half_open' then
  if ok then
    redis.call('DEL', key)
    return 'closed'
  end
  return open()
end
if ok and not rate then
  redis.call('DEL', key)
  return 'closed'
end
local failures = tonumber(redis.call('HGET', key, 'failures') or '0')
local window = redis.call('HGET', key, 'window') or ''
if ok then
  failures = 0
  window = window .. '0'
else
  failures = failures + 1
  window = window .. '1'
end
if #window > size then window = string.sub(window, -size) end
redis.call('HSET', key, 'failures', failures, 'window', window)
local tripped = threshold ~= nil and failures >= threshold
if not tripped and rate and #window >= tonumber(ARGV[6]) then
  local _, bad = string.gsub(window, '1', '')
  tripped = bad / #window >= rate
end
if tripped then return open() end
redis.call('HSET', key, 'state', 'closed')
redis.call('PEXPIRE', key, ARGV[8])
return 'closed'
"""
)

# ARGV: now (unused), idle_ttl_ms.
_RELEASE = """
local key = KEYS[1]
if redis.call('HGET', KEYS[1], 'state') ~= 'half_open' then return 0 end
local trials = redis.call('HGET', key, 'trials') or ''
local rest = string.match(trials, '^%S+%s*(.*)$')
if rest == nil then return 0 end
redis.call('HSET', key, 'trials', rest)
redis.call('PEXPIRE', key, ARGV[2])
return 1
"""

# ARGV: now. Returns {now, state, failures, window, opened_at, retry_at, trials}.
_STATUS = (
    _PRELUDE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'failures', 'window', 'opened_at',
                     'retry_at', 'trials')
local out = {fmt(now_s())}
for i = 1, 6 do out[i + 1] = f[i] or '' end
return out
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _time(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text else None


class RedisBreakerBoard:
    """Breaker state in Redis under ``prefix``: implements ``BreakerBoard``.

    Args:
        redis_url_or_client: A Redis URL (``redis://127.0.0.1:6379/0``), for which the board
            makes its own client and closes it in :meth:`close`; or a ``redis.asyncio.Redis``
            client, which stays the caller's to close.
        policy: Applied to every breaker on this board (default: ``BreakerPolicy()``).
        prefix: Put before every key; boards with different policies need different prefixes.
        clock: Replaces the Redis server's clock (tests only; see the module documentation).
        idle_ttl_s: A breaker's key expires after this long without a write.
        fail_open: Let calls through when Redis cannot be reached (logged), rather than fail.
    """

    def __init__(
        self,
        redis_url_or_client: str | Redis,
        policy: BreakerPolicy | None = None,
        *,
        prefix: str = "keel:breaker:",
        clock: Clock | None = None,
        idle_ttl_s: float = _DEFAULT_IDLE_TTL_S,
        fail_open: bool = True,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401 - checks that the extra is installed
            from redis.exceptions import RedisError
        except ImportError as exc:
            raise MissingExtraError(
                package="redis", extra="redis", feature="Circuit breakers shared through Redis"
            ) from exc
        from keel.resilience._breaker import BreakerPolicy

        if not prefix:
            raise ConfigurationError(
                "prefix must not be empty: statuses() reads every key it starts"
            )
        if not math.isfinite(idle_ttl_s) or idle_ttl_s < 1:
            raise ConfigurationError(
                f"idle_ttl_s must be a finite number of at least 1, got {idle_ttl_s}"
            )
        self._policy = policy if policy is not None else BreakerPolicy()
        self._prefix = prefix
        self._clock = clock
        self._ttl_ms = str(round(idle_ttl_s * 1000))
        self._fail_open = fail_open
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._client, self._owns_client = redis_client(redis_url_or_client)
        self._before_call = self._client.register_script(_BEFORE_CALL)
        self._record = self._client.register_script(_RECORD)
        self._release = self._client.register_script(_RELEASE)
        self._status = self._client.register_script(_STATUS)

    def __repr__(self) -> str:
        return f"RedisBreakerBoard(prefix={self._prefix!r}, {self._policy!r})"

    @property
    def policy(self) -> BreakerPolicy:
        """The policy applied to every breaker on this board."""
        return self._policy

    @property
    def prefix(self) -> str:
        """What every key of this board starts with."""
        return self._prefix

    def _now(self) -> str:
        return "" if self._clock is None else repr(self._clock.now())

    def _unreachable(self, what: str, name: str, error: BaseException) -> None:
        if not self._fail_open:
            raise error
        _log.warning(
            "circuit breaker '%s': Redis could not be reached to %s (%s: %s); the call goes "
            "ahead without the breaker",
            name,
            what,
            type(error).__name__,
            error,
        )

    async def before_call(self, name: str) -> None:
        """Let a call through or raise :class:`keel.errors.CircuitOpenError`."""
        policy = self._policy
        args: list[str | int | float] = [
            self._now(),
            policy.half_open_max_calls,
            policy.trial_timeout_s,
            self._ttl_ms,
        ]
        try:
            allowed, retry_in = await self._before_call(keys=[self._prefix + name], args=args)
        except self._errors as error:
            self._unreachable("check it", name, error)
            return
        if not int(allowed):
            raise CircuitOpenError(name, retry_in_s=max(0.0, float(_text(retry_in))))

    async def record(self, name: str, ok: bool) -> None:
        """Count a call's outcome."""
        policy = self._policy
        args: list[str | int | float] = [
            self._now(),
            "1" if ok else "0",
            "" if policy.failure_threshold is None else policy.failure_threshold,
            "" if policy.failure_rate is None else repr(policy.failure_rate),
            policy.window,
            policy.min_calls,
            policy.cooldown_s,
            self._ttl_ms,
        ]
        try:
            await self._record(keys=[self._prefix + name], args=args)
        except self._errors as error:
            self._unreachable("record an outcome", name, error)

    async def release(self, name: str) -> None:
        """Give back a trial slot, if the breaker is half-open."""
        try:
            await self._release(keys=[self._prefix + name], args=[self._now(), self._ttl_ms])
        except self._errors as error:
            self._unreachable("give back a trial slot", name, error)

    async def status(self, name: str) -> BreakerStatus:
        """The breaker's current status."""
        from keel.resilience._breaker import BreakerStatus

        raw = await self._status(keys=[self._prefix + name], args=[self._now()])
        now, state_raw, failures, window_raw, opened_at, retry_at, trials = (_text(v) for v in raw)
        if not state_raw:
            return BreakerStatus(name=name)
        state: BreakerState = "closed"
        if state_raw in ("open", "half_open"):
            state = "open" if state_raw == "open" else "half_open"
        retry = _time(retry_at)
        if state == "open" and retry is not None and float(now) >= retry:
            state = "half_open"
        window = window_raw
        return BreakerStatus(
            name=name,
            state=state,
            consecutive_failures=int(failures or 0),
            failure_rate=window.count("1") / len(window) if window else 0.0,
            calls_in_window=len(window),
            opened_at=_time(opened_at),
            retry_at=retry,
            trials_in_flight=len(trials.split()) if state_raw == "half_open" else 0,
        )

    async def statuses(self) -> list[BreakerStatus]:
        """Every breaker with state under this board's prefix, by name."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._prefix) + "*"
        names = sorted(
            {
                _text(key)[len(self._prefix) :]
                async for key in self._client.scan_iter(match=pattern, count=500, _type="HASH")
            }
        )
        return [await self.status(name) for name in names]

    async def reset(self, name: str) -> None:
        """Close the breaker and forget its counts."""
        await self._client.delete(self._prefix + name)

    async def close(self) -> None:
        """Close the Redis client if this board created it."""
        if self._owns_client:
            await self._client.aclose()

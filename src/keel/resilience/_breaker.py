"""Circuit breakers: stop calling a model that keeps failing, and try it again later.

::

    board = MemoryBreakerBoard(BreakerPolicy(failure_threshold=5, cooldown_s=30))
    model = Fallback(
        Retrying(CircuitBreaker(OpenAIModel("gpt-4o-mini"), board)),
        Retrying(CircuitBreaker(AnthropicModel("claude-3-5-haiku-latest"), board)),
    )

**States.** A breaker starts *closed*: calls go through and their outcomes are counted. It
*opens* after ``failure_threshold`` failures in a row, or (with ``failure_rate`` set) when at
least ``min_calls`` of the last ``window`` calls were made and the share of failures among them
reaches ``failure_rate``. While open, calls are refused at once with
:class:`keel.errors.CircuitOpenError`, without reaching the model, so a dead provider costs
nothing and a fallback answers instead. After ``cooldown_s`` it is *half-open*: up to
``half_open_max_calls`` trial calls may be in flight, and any more are refused. A trial that
succeeds *closes* the breaker (counts start afresh); a trial that fails opens it again for a
new cooldown. A trial slot held longer than ``trial_timeout_s`` (its process died mid-call) is
taken back, so a lost trial never keeps a shared breaker half-open for good.

**What counts as a failure.** Only errors that say the *provider* is unhealthy: a
:class:`keel.errors.ModelError` with ``retryable=True``, i.e. timeouts, connection failures,
HTTP 408/409/429/5xx, malformed or cut-off answers (see :func:`counts_as_failure`). A request
the provider rejected (400, 401, 403, 404, a prompt too long for the context window, a
content-policy refusal) proves the provider is up and answering: the request was wrong, so it
counts neither as a failure nor as a success. When such an error ends a half-open trial, the
trial's slot is given back and the breaker stays half-open, so the next call becomes the trial.
The same goes for a call that ends without a verdict: cancelled, stopped by a bug that is not
a ``ModelError``, or a stream the caller stopped reading. A success resets the count of
failures in a row.

Outcomes that arrive while the breaker is open (calls that started before it opened) change
nothing: the cooldown runs its course.

**Boards.** The state lives on a :class:`BreakerBoard`, keyed by breaker name (the model's name
by default). :class:`MemoryBreakerBoard` keeps it in this process; ``RedisBreakerBoard`` keeps
it in Redis, so that failures seen by one process open the breaker for every process and host.
Each board applies one :class:`BreakerPolicy` to all its breakers; use two boards for two
policies.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from keel._core.messages import Attempt, ModelRequest, ModelResponse, StreamComplete, StreamEvent
from keel.errors import CircuitOpenError, ConfigurationError, ModelError
from keel.ports import Clock, Model, SystemClock
from keel.resilience._attempts import aclose_stream
from keel.resilience._breaker_redis import RedisBreakerBoard
from keel.resilience._wrapper import WrapperModel

__all__ = [
    "BreakerBoard",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStatus",
    "CircuitBreaker",
    "MemoryBreakerBoard",
    "RedisBreakerBoard",
    "counts_as_failure",
]

BreakerState = Literal["closed", "open", "half_open"]
"""Where a breaker is: ``closed`` (calls go through), ``open`` (refused until the cooldown
ends) or ``half_open`` (a few trial calls go through)."""


def _number(name: str, value: float, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"BreakerPolicy.{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise ConfigurationError(f"BreakerPolicy.{name} must be {bound}, got {value!r}")


def _count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"BreakerPolicy.{name} must be an int of at least 1, got {value!r}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """When a breaker opens and how it recovers; every field has a finite default.

    Attributes:
        failure_threshold: Open after this many failures in a row (``None``: only the rate).
        failure_rate: Also open when this share (0 to 1) of the last ``window`` calls failed,
            once at least ``min_calls`` of them were made (``None``: only the threshold).
        window: How many recent calls the rate looks at.
        min_calls: Calls needed in the window before the rate can open the breaker.
        cooldown_s: How long an open breaker refuses calls before letting a trial through.
        half_open_max_calls: Trial calls allowed in flight at once when half-open.
        trial_timeout_s: A trial slot held this long is presumed lost and taken back.
    """

    failure_threshold: int | None = 5
    failure_rate: float | None = None
    window: int = 20
    min_calls: int = 10
    cooldown_s: float = 30.0
    half_open_max_calls: int = 1
    trial_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.failure_threshold is None and self.failure_rate is None:
            raise ConfigurationError(
                "BreakerPolicy needs failure_threshold or failure_rate (or both); with neither "
                "the breaker could never open"
            )
        if self.failure_threshold is not None:
            _count("failure_threshold", self.failure_threshold)
        if self.failure_rate is not None:
            _number("failure_rate", self.failure_rate, positive=True)
            if self.failure_rate > 1:
                raise ConfigurationError(
                    f"BreakerPolicy.failure_rate is a share of calls, from 0 (excluded) to 1, "
                    f"got {self.failure_rate!r}"
                )
        _count("window", self.window)
        _count("min_calls", self.min_calls)
        if self.min_calls > self.window:
            raise ConfigurationError(
                f"BreakerPolicy.min_calls ({self.min_calls}) cannot exceed window "
                f"({self.window}): the rate would never be judged"
            )
        _number("cooldown_s", self.cooldown_s, positive=True)
        _count("half_open_max_calls", self.half_open_max_calls)
        _number("trial_timeout_s", self.trial_timeout_s, positive=True)

    def trips(self, consecutive_failures: int, window: str) -> bool:
        """Whether a closed breaker opens, given its failures in a row and its recent calls
        (``"1"`` a failure, ``"0"`` a success, oldest first)."""
        if self.failure_threshold is not None and consecutive_failures >= self.failure_threshold:
            return True
        if self.failure_rate is None or len(window) < self.min_calls:
            return False
        return window.count("1") / len(window) >= self.failure_rate


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStatus:
    """A breaker as a board sees it now.

    ``state`` is the effective one: an open breaker whose cooldown is over reads
    ``half_open``. ``failure_rate`` is the share of failures among the ``calls_in_window`` most
    recent calls (0.0 with none). ``opened_at`` and ``retry_at`` are seconds since the epoch
    (by the board's clock) when the breaker last opened and when it lets a trial through;
    ``None`` while closed.
    """

    name: str
    state: BreakerState = "closed"
    consecutive_failures: int = 0
    failure_rate: float = 0.0
    calls_in_window: int = 0
    opened_at: float | None = None
    retry_at: float | None = None
    trials_in_flight: int = 0


@runtime_checkable
class BreakerBoard(Protocol):
    """Where circuit breakers keep their state, keyed by breaker name.

    :class:`CircuitBreaker` calls :meth:`before_call` before each call, then exactly one of
    :meth:`record` (a verdict) or :meth:`release` (no verdict) when it ends.
    """

    @property
    def policy(self) -> BreakerPolicy:
        """The policy this board applies to every breaker on it."""
        ...

    async def before_call(self, name: str) -> None:
        """Let a call through, or raise :class:`keel.errors.CircuitOpenError` when the breaker
        is open, or half-open with every trial slot taken. Takes a trial slot when half-open."""
        ...

    async def record(self, name: str, ok: bool) -> None:
        """Count a call's outcome: ``ok`` a success, else a failure; may change the state."""
        ...

    async def release(self, name: str) -> None:
        """End a call without a verdict: give back its trial slot if it held one."""
        ...

    async def status(self, name: str) -> BreakerStatus:
        """The breaker's current status (closed with zero counts if never used)."""
        ...

    async def statuses(self) -> list[BreakerStatus]:
        """The status of every breaker the board holds state for, by name."""
        ...

    async def reset(self, name: str) -> None:
        """Forget the breaker's state: it is closed, with zero counts."""
        ...

    async def close(self) -> None:
        """Release connections held by the board."""
        ...


def counts_as_failure(error: BaseException) -> bool:
    """Whether ``error`` counts against a model's breaker: a retryable
    :class:`keel.errors.ModelError` (the provider is unhealthy), except ``CircuitOpenError``."""
    return (
        isinstance(error, ModelError)
        and error.retryable
        and not isinstance(error, CircuitOpenError)
    )


@dataclass(slots=True)
class _Breaker:
    """One breaker's state on a :class:`MemoryBreakerBoard`; times are the monotonic clock's."""

    state: BreakerState = "closed"
    failures: int = 0
    window: deque[str] = field(default_factory=deque)
    opened_at: float | None = None
    retry_at: float | None = None
    trials: list[float] = field(default_factory=list)


class MemoryBreakerBoard:
    """Breaker state in this process's memory: the default board.

    Decisions use ``clock.monotonic()``, so a wall-clock jump neither shortens nor stretches a
    cooldown; :class:`BreakerStatus` times are converted to the wall clock for display. Safe to
    share between tasks and threads.
    """

    def __init__(self, policy: BreakerPolicy | None = None, *, clock: Clock | None = None) -> None:
        self._policy = policy if policy is not None else BreakerPolicy()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._breakers: dict[str, _Breaker] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryBreakerBoard({self._policy!r})"

    @property
    def policy(self) -> BreakerPolicy:
        """The policy applied to every breaker on this board."""
        return self._policy

    def _open(self, breaker: _Breaker, now: float) -> None:
        breaker.state = "open"
        breaker.opened_at = now
        breaker.retry_at = now + self._policy.cooldown_s
        breaker.trials = []

    async def before_call(self, name: str) -> None:
        """Let a call through or raise :class:`keel.errors.CircuitOpenError`."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None or breaker.state == "closed":
                return
            policy = self._policy
            now = self._clock.monotonic()
            if breaker.state == "open":
                assert breaker.retry_at is not None
                if now < breaker.retry_at:
                    raise CircuitOpenError(name, retry_in_s=breaker.retry_at - now)
                breaker.state = "half_open"
                breaker.trials = []
            breaker.trials = [t for t in breaker.trials if now - t < policy.trial_timeout_s]
            if len(breaker.trials) >= policy.half_open_max_calls:
                retry_in = min(breaker.trials) + policy.trial_timeout_s - now
                raise CircuitOpenError(name, retry_in_s=retry_in)
            breaker.trials.append(now)

    async def record(self, name: str, ok: bool) -> None:
        """Count a call's outcome."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                if ok and self._policy.failure_rate is None:
                    return  # nothing to remember: closed, no failures
                breaker = self._breakers[name] = _Breaker()
            if breaker.state == "open":
                return
            if breaker.state == "half_open":
                if ok:
                    del self._breakers[name]
                else:
                    self._open(breaker, self._clock.monotonic())
                return
            if ok and self._policy.failure_rate is None:
                del self._breakers[name]
                return
            breaker.failures = 0 if ok else breaker.failures + 1
            breaker.window.append("0" if ok else "1")
            while len(breaker.window) > self._policy.window:
                breaker.window.popleft()
            if self._policy.trips(breaker.failures, "".join(breaker.window)):
                self._open(breaker, self._clock.monotonic())

    async def release(self, name: str) -> None:
        """Give back a trial slot, if the breaker is half-open."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is not None and breaker.state == "half_open" and breaker.trials:
                breaker.trials.pop(0)

    async def status(self, name: str) -> BreakerStatus:
        """The breaker's current status."""
        with self._lock:
            return self._status(name)

    def _status(self, name: str) -> BreakerStatus:
        breaker = self._breakers.get(name)
        if breaker is None:
            return BreakerStatus(name=name)
        now = self._clock.monotonic()
        wall = self._clock.now()
        state = breaker.state
        if state == "open" and breaker.retry_at is not None and now >= breaker.retry_at:
            state = "half_open"
        calls = len(breaker.window)
        return BreakerStatus(
            name=name,
            state=state,
            consecutive_failures=breaker.failures,
            failure_rate=breaker.window.count("1") / calls if calls else 0.0,
            calls_in_window=calls,
            opened_at=None if breaker.opened_at is None else wall - (now - breaker.opened_at),
            retry_at=None if breaker.retry_at is None else wall + (breaker.retry_at - now),
            trials_in_flight=len(breaker.trials) if state == "half_open" else 0,
        )

    async def statuses(self) -> list[BreakerStatus]:
        """Every breaker with state on this board, by name."""
        with self._lock:
            return [self._status(name) for name in sorted(self._breakers)]

    async def reset(self, name: str) -> None:
        """Close the breaker and forget its counts."""
        with self._lock:
            self._breakers.pop(name, None)

    async def close(self) -> None:
        """Nothing to release."""


class CircuitBreaker(WrapperModel):
    """A model whose calls go through a circuit breaker on ``board``.

    ``name`` is the breaker's key on the board (default: the model's name); give several
    models one name to let them share a breaker, e.g. all the models of one provider. The
    wrapper's own :attr:`name` is the model's. Default board: a new
    :class:`MemoryBreakerBoard` with the default policy.

    A call refused by the breaker raises :class:`keel.errors.CircuitOpenError` whose
    ``attempts`` hold one skipped :class:`keel._core.messages.Attempt`; everything else the
    model raises or returns passes through unchanged. ``aclose`` closes the model, not the
    board, which may serve other models: close it where it was made.
    """

    def __init__(
        self, model: Model, board: BreakerBoard | None = None, *, name: str | None = None
    ) -> None:
        key = model.name if name is None else name
        if not key:
            raise ConfigurationError("a circuit breaker needs a non-empty name")
        super().__init__(model)
        self._board: BreakerBoard = board if board is not None else MemoryBreakerBoard()
        self._key = key

    def __repr__(self) -> str:
        return f"CircuitBreaker({self._model!r}, breaker={self._key!r})"

    @property
    def breaker_name(self) -> str:
        """The breaker's key on the board."""
        return self._key

    @property
    def board(self) -> BreakerBoard:
        """Where the breaker's state lives."""
        return self._board

    async def status(self) -> BreakerStatus:
        """This breaker's status."""
        return await self._board.status(self._key)

    async def _admit(self) -> None:
        try:
            await self._board.before_call(self._key)
        except CircuitOpenError as error:
            refused = CircuitOpenError(self.name, retry_in_s=error.retry_in_s)
            if self._key != self.name:
                refused.message += f" (breaker '{self._key}')"
                refused.args = (refused.message,)
            refused.attempts = (
                Attempt(model=self.name, code=refused.code, message=refused.message, skipped=True),
            )
            raise refused from None

    async def _settle(self, error: ModelError) -> None:
        if counts_as_failure(error):
            await self._board.record(self._key, False)
        else:
            await self._board.release(self._key)

    async def _abandon(self) -> None:
        # The call ended without a verdict (cancelled, a bug, a stream left unread): give the
        # slot back, keeping the original exception the one that propagates.
        with contextlib.suppress(Exception):
            await self._board.release(self._key)

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Call the model if the breaker allows it, and count the outcome."""
        await self._admit()
        try:
            response = await self._model.request(request)
        except ModelError as error:
            await self._settle(error)
            raise
        except BaseException:
            await self._abandon()
            raise
        await self._board.record(self._key, True)
        return response

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream from the model if the breaker allows it; the outcome is counted when the
        stream completes or fails."""
        await self._admit()
        events = self._model.stream(request)
        settled = False
        try:
            async for event in events:
                if isinstance(event, StreamComplete) and not settled:
                    settled = True
                    await self._board.record(self._key, True)
                yield event
        except ModelError as error:
            if not settled:
                settled = True
                await self._settle(error)
            raise
        finally:
            if not settled:
                await self._abandon()
            await aclose_stream(events)

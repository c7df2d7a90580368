"""What the resilience tests share: fake time, a model that plays a script of outcomes, and
the Redis server the shared-breaker tests need."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from keel._core.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    TextDelta,
    UserMessage,
)
from keel._core.usage import Usage
from keel.errors import ModelError, ModelHTTPError
from keel.ports import Model
from keel.testing._clock import FakeClock

HELLO = ModelRequest(messages=[UserMessage(content="Where is my order?")])


class FakeTime:
    """A :class:`FakeClock` and a sleep that advances it at once, recording every wait."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)


class TopRandom(random.Random):
    """Draws the top of every range, so backoff schedules are their caps."""

    def uniform(self, a: float, b: float) -> float:
        return b


@dataclass(frozen=True)
class Hang:
    """The call never answers (until cancelled)."""


@dataclass(frozen=True)
class Slow:
    """The call takes ``seconds`` of fake time, then has ``outcome``."""

    seconds: float
    outcome: Outcome


@dataclass(frozen=True)
class MidStream:
    """A stream that sends ``deltas`` pieces of text, then fails with ``error``."""

    error: ModelError
    deltas: int = 1


@dataclass(frozen=True)
class Empty:
    """A stream that ends without any event."""


Outcome = str | BaseException | Hang | Slow | MidStream | Empty


def http_error(status: int, retry_after: float | None = None) -> ModelHTTPError:
    return ModelHTTPError(f"HTTP {status}", status=status, retry_after=retry_after)


def non_retryable(code: str) -> ModelHTTPError:
    """A 400 the way providers report a context-window overflow or a content-policy block."""
    error = ModelHTTPError(f"rejected: {code}", status=400)
    error.code = code
    error.retryable = False
    return error


def answer(text: str, *, served_by: str = "") -> ModelResponse:
    return ModelResponse(
        message=AssistantMessage(content=text),
        usage=Usage(requests=1, input_tokens=3, output_tokens=2),
        finish_reason="stop",
        served_by=served_by,
    )


class Flaky(Model):
    """Plays ``outcomes`` one per call (request or stream): a str answers, an exception is
    raised, :class:`Hang` never answers, :class:`Slow` takes fake time first."""

    def __init__(
        self, outcomes: Iterable[Outcome], *, name: str = "flaky", time: FakeTime | None = None
    ) -> None:
        self._outcomes = list(outcomes)
        self._name = name
        self._time = time
        self.calls = 0
        self.closed = False
        self.streams_closed = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def remaining(self) -> int:
        return len(self._outcomes)

    async def _next(self) -> Outcome:
        self.calls += 1
        if not self._outcomes:
            raise AssertionError(f"{self._name} was called {self.calls} times: script used up")
        outcome = self._outcomes.pop(0)
        while isinstance(outcome, Slow):
            assert self._time is not None, "Slow needs the FakeTime"
            self._time.clock.advance(outcome.seconds)
            outcome = outcome.outcome
        if isinstance(outcome, Hang):
            await asyncio.Event().wait()
        return outcome

    async def request(self, request: ModelRequest) -> ModelResponse:
        outcome = await self._next()
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, str), f"{outcome!r} is for streams"
        return answer(outcome)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        try:
            outcome = await self._next()
            if isinstance(outcome, BaseException):
                raise outcome
            if isinstance(outcome, Empty):
                return
            if isinstance(outcome, MidStream):
                for i in range(outcome.deltas):
                    yield TextDelta(text=f"part{i} ")
                raise outcome.error
            assert isinstance(outcome, str)
            for word in outcome.split(" "):
                yield TextDelta(text=word)
            yield StreamComplete(response=answer(outcome))
        finally:
            self.streams_closed += 1

    async def aclose(self) -> None:
        self.closed = True


async def collect_into(stream: AsyncIterator[StreamEvent], seen: list[StreamEvent]) -> None:
    """Read ``stream`` into ``seen`` (which keeps what arrived if the stream fails)."""
    async for event in stream:
        seen.append(event)


def unique_prefix() -> str:
    return f"keel:test:breaker:{uuid.uuid4().hex}:"

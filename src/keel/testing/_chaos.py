"""A model wrapper that fails on purpose, to test that what is built on it copes.

::

    flaky = ChaosModel(OpenAIModel("gpt-4o-mini"), rate=0.3, seed=7)
    model = Retrying(flaky)            # does the retry policy ride it out?
    ...
    assert flaky.injected["rate_limit"] > 0

Each request fails with probability ``rate``, with a fault drawn from ``faults``, by a
``random.Random(seed)``: the same seed and the same calls give the same faults, so a failing
chaos test can be replayed. The faults raise what the real providers raise:

==================== ===========================================================================
``timeout``          :class:`~keel.errors.ModelTimeoutError` (retryable)
``rate_limit``       :class:`~keel.errors.ModelHTTPError` 429 with ``retry_after`` (retryable)
``server_error``     :class:`~keel.errors.ModelHTTPError` 500 (retryable)
``malformed``        :class:`~keel.errors.ModelResponseError`, an answer that cannot be parsed
                     (retryable)
``cut_stream``       :class:`~keel.errors.ModelConnectionError` (retryable): the connection broke
                     before the answer was complete; ``stream()`` yields the first part of the
                     answer before raising
``bad_tool_arguments`` the model's own answer, with each tool call's arguments cut off half-way
                     (JSON that does not parse), as a model that lost track might send; an
                     answer without tool calls is passed on untouched (no fault)
==================== ===========================================================================

The raised faults are raised without calling the wrapped model, so a scripted model's turns
are not used up by them; ``bad_tool_arguments`` and a cut stream do call it (they need its
answer). ``injected`` counts the faults that took effect, by name.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace

from keel._core.messages import (
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
)
from keel.errors import (
    ConfigurationError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelResponseError,
    ModelTimeoutError,
)
from keel.ports import Model
from keel.resilience._wrapper import WrapperModel

__all__ = ["FAULTS", "ChaosModel"]

FAULTS: tuple[str, ...] = (
    "timeout",
    "rate_limit",
    "server_error",
    "malformed",
    "cut_stream",
    "bad_tool_arguments",
)
"""The names of the faults :class:`ChaosModel` can inject."""


class ChaosModel(WrapperModel):
    """Wraps ``model`` and makes a share of its requests fail; see the module documentation.

    Args:
        model: The model answering the requests that do not fail.
        rate: The probability, from 0 (never) to 1 (always), that a request gets a fault.
        faults: The faults to draw from, uniformly; repeat a name to make it likelier.
        seed: Seeds the random draws, so that a run of faults can be replayed.
        retry_after_s: The ``retry_after`` of injected rate limits, in seconds.
        delay_s: How long each injected fault takes before it shows (a timeout that took
            its time), in seconds.
        sleep: How to wait ``delay_s``; :func:`asyncio.sleep` by default.

    The name is the wrapped model's, and so is the ``model`` of the errors raised.
    """

    def __init__(
        self,
        model: Model,
        *,
        rate: float,
        faults: Sequence[str] = FAULTS,
        seed: int = 0,
        retry_after_s: float = 0.0,
        delay_s: float = 0.0,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        if not (isinstance(rate, int | float) and 0.0 <= rate <= 1.0):
            raise ConfigurationError(f"rate must be a probability from 0 to 1, got {rate!r}")
        if isinstance(faults, str):
            raise ConfigurationError(
                f"faults must be a sequence of fault names, not one string; write ({faults!r},)"
            )
        faults = tuple(faults)
        unknown = [name for name in faults if name not in FAULTS]
        if unknown or not faults:
            given = ", ".join(map(repr, unknown)) if unknown else "none"
            raise ConfigurationError(
                f"unknown chaos faults: {given}; choose one or more of: {', '.join(FAULTS)}"
            )
        for label, seconds in (("retry_after_s", retry_after_s), ("delay_s", delay_s)):
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ConfigurationError(f"{label} must be a finite number of seconds, 0 or more")
        super().__init__(model)
        self._rate = float(rate)
        self._faults = faults
        self._random = random.Random(seed)
        self._retry_after_s = retry_after_s
        self._delay_s = delay_s
        self._sleep = sleep if sleep is not None else asyncio.sleep
        #: How many faults of each kind took effect.
        self.injected: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"ChaosModel({self._model!r}, rate={self._rate:g}, faults={self._faults!r})"

    @property
    def rate(self) -> float:
        """The probability that a request gets a fault."""
        return self._rate

    @property
    def faults(self) -> tuple[str, ...]:
        """The faults drawn from."""
        return self._faults

    def draw(self) -> str | None:
        """Draw the next request's fault (``None``: no fault). Each request draws once."""
        if self._random.random() >= self._rate:
            return None
        return self._random.choice(self._faults)

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The wrapped model's answer, unless a fault is drawn."""
        fault = self.draw()
        if fault is None:
            return await self._model.request(request)
        if fault == "bad_tool_arguments":
            response = await self._model.request(request)
            corrupted = _corrupt(response)
            if corrupted is None:
                return response
            await self._inject(fault)
            return corrupted
        await self._inject(fault)
        raise self._error(fault)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """The wrapped model's stream, unless a fault is drawn; a cut stream yields the first
        part of the answer, then raises."""
        fault = self.draw()
        if fault is None:
            async for event in self._model.stream(request):
                yield event
            return
        if fault not in ("bad_tool_arguments", "cut_stream"):
            await self._inject(fault)
            raise self._error(fault)
        events = [event async for event in self._model.stream(request)]
        complete = events[-1] if events else None
        if not isinstance(complete, StreamComplete):
            raise ModelResponseError(
                f"model '{self.name}' ended its stream without StreamComplete", model=self.name
            )
        deltas = events[:-1]
        if fault == "cut_stream":
            for event in _first_part(deltas):
                yield event
            await self._inject(fault)
            raise self._error(fault)
        corrupted = _corrupt(complete.response)
        if corrupted is None:
            for event in events:
                yield event
            return
        await self._inject(fault)
        for event in deltas:
            if isinstance(event, TextDelta):
                yield event
        for index, call in enumerate(corrupted.message.tool_calls):
            yield ToolCallDelta(index=index, id=call.id, name=call.name, arguments=call.arguments)
        yield StreamComplete(response=corrupted)

    async def _inject(self, fault: str) -> None:
        self.injected[fault] += 1
        if self._delay_s:
            await self._sleep(self._delay_s)

    def _error(self, fault: str) -> ModelError:
        name = self.name
        why = "(injected by ChaosModel)"
        if fault == "timeout":
            return ModelTimeoutError(
                f"model '{name}' did not answer in time {why}; the request can be retried",
                model=name,
            )
        if fault == "rate_limit":
            return ModelHTTPError(
                f"model '{name}' answered 429: rate limited; retry after "
                f"{self._retry_after_s:g}s {why}",
                status=429,
                model=name,
                retry_after=self._retry_after_s,
            )
        if fault == "server_error":
            return ModelHTTPError(
                f"model '{name}' answered 500: the provider failed; the request can be retried "
                f"{why}",
                status=500,
                model=name,
            )
        if fault == "malformed":
            return ModelResponseError(
                f"the answer of model '{name}' is not a JSON object: '{{\"choices\": [' {why}",
                model=name,
            )
        return ModelConnectionError(
            f"the connection to model '{name}' broke before the answer was complete {why}; "
            "the request can be retried",
            model=name,
        )


def _first_part(deltas: Sequence[StreamEvent]) -> list[StreamEvent]:
    """About the first half of a stream's deltas (of the text, if it came in one piece)."""
    if len(deltas) == 1 and isinstance(deltas[0], TextDelta):
        text = deltas[0].text
        return [TextDelta(text=text[: len(text) // 2])] if len(text) > 1 else []
    return list(deltas[: len(deltas) // 2])


def _corrupt(response: ModelResponse) -> ModelResponse | None:
    """``response`` with its tool calls' arguments cut off half-way; ``None`` if it has none."""
    calls = response.message.tool_calls
    if not calls:
        return None
    broken = tuple(replace(call, arguments=_cut_json(call.arguments)) for call in calls)
    return replace(response, message=replace(response.message, tool_calls=broken))


def _cut_json(text: str) -> str:
    """The first half of ``text``, made sure not to parse as JSON (nor to be empty, which
    the runtime reads as ``{}``)."""
    cut = text[: len(text) // 2]
    if cut.strip():
        try:
            json.loads(cut)
        except ValueError:
            return cut
    # A JSON text never ends with "{" outside a string, so this cannot parse.
    return cut + "{"

"""A chain of models: when one fails, the next one answers.

::

    model = Fallback(
        Retrying(CircuitBreaker(OpenAIModel("gpt-4o-mini"), board)),
        Retrying(CircuitBreaker(AnthropicModel("claude-3-5-haiku-latest"), board)),
        RulesModel(),  # offline, never fails: the last resort
    )

:class:`Fallback` tries its models in order and moves on whenever one raises any
:class:`keel.errors.ModelError`: retries exhausted, a circuit breaker open, and also errors
that resending to the *same* model would not fix (a prompt too long for its context window, a
content-policy refusal, a bad API key, an unknown model name), since the *next* model may well
take the request. Anything that is not a ``ModelError`` (a bug, a cancellation) propagates at
once.

The first answer is returned with ``served_by`` naming the model that gave it (or what that
model reported, when it is itself a wrapper) and ``attempts`` holding every attempt of every
model tried, in order. When every model failed, :class:`keel.errors.AllModelsFailedError` is
raised; its ``errors`` keep each model's error and its ``attempts`` all the attempts.

:meth:`Fallback.stream` moves on the same way as long as the failing model has not produced
any event; once one event has been passed on, a failure is raised as it is (with the attempts
so far), since the caller has already seen part of that model's answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from keel._core.messages import (
    Attempt,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
)
from keel.errors import AllModelsFailedError, ConfigurationError, ModelError, ModelResponseError
from keel.ports import Clock, Model, SystemClock
from keel.resilience._attempts import (
    aclose_stream,
    attempts_from_error,
    attempts_from_response,
    ms,
)

__all__ = ["Fallback"]


def _named(error: ModelError, model: Model) -> ModelError:
    """``error``, naming ``model`` if it names none (the summary of a failed chain uses it)."""
    if not error.model:
        error.model = model.name
    return error


class Fallback(Model):
    """Tries ``models`` in order until one answers; see the module documentation.

    ``name`` is ``"fallback(a,b,c)"`` from the models' names. ``clock`` (default: the system
    clock) measures the latency of attempts that a model did not report itself.
    """

    def __init__(self, *models: Model, clock: Clock | None = None) -> None:
        if not models:
            raise ConfigurationError(
                "Fallback needs at least one model, e.g. Fallback(primary, backup, RulesModel())"
            )
        for model in models:
            if not isinstance(model, Model):
                raise TypeError(
                    f"Fallback takes keel.ports.Model instances, got {type(model).__name__}"
                )
        self._models = models
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._name = f"fallback({','.join(model.name for model in models)})"

    def __repr__(self) -> str:
        return f"Fallback({', '.join(repr(model) for model in self._models)})"

    @property
    def name(self) -> str:
        """``fallback(<name>,<name>,...)``."""
        return self._name

    @property
    def models(self) -> tuple[Model, ...]:
        """The models, in the order they are tried."""
        return self._models

    def _all_failed(
        self, errors: list[ModelError], attempts: list[Attempt]
    ) -> AllModelsFailedError:
        error = AllModelsFailedError(errors)
        error.attempts = tuple(attempts)
        return error

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The first answer of the models, tried in order."""
        attempts: list[Attempt] = []
        errors: list[ModelError] = []
        for model in self._models:
            started = self._clock.monotonic()
            try:
                response = await model.request(request)
            except ModelError as error:
                latency = ms(self._clock.monotonic() - started)
                attempts.extend(attempts_from_error(error, model=model.name, latency_ms=latency))
                errors.append(_named(error, model))
                continue
            latency = ms(self._clock.monotonic() - started)
            attempts.extend(attempts_from_response(response, model=model.name, latency_ms=latency))
            return replace(
                response,
                served_by=response.served_by or model.name,
                attempts=tuple(attempts),
            )
        raise self._all_failed(errors, attempts) from errors[-1]

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream from the first model that starts answering, tried in order."""
        attempts: list[Attempt] = []
        model, event, events, started = await self._first_event(request, attempts)
        try:
            while True:
                if isinstance(event, StreamComplete):
                    response = event.response
                    latency = ms(self._clock.monotonic() - started)
                    attempts.extend(
                        attempts_from_response(response, model=model.name, latency_ms=latency)
                    )
                    yield StreamComplete(
                        response=replace(
                            response,
                            served_by=response.served_by or model.name,
                            attempts=tuple(attempts),
                        )
                    )
                else:
                    yield event
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
        except ModelError as error:
            latency = ms(self._clock.monotonic() - started)
            attempts.extend(attempts_from_error(error, model=model.name, latency_ms=latency))
            error.attempts = tuple(attempts)
            raise
        finally:
            await aclose_stream(events)

    async def _first_event(
        self, request: ModelRequest, attempts: list[Attempt]
    ) -> tuple[Model, StreamEvent, AsyncIterator[StreamEvent], float]:
        """The first model whose stream produces an event: the model, that event, the rest
        of its stream and when it started. Failed models are added to ``attempts``."""
        errors: list[ModelError] = []
        for model in self._models:
            started = self._clock.monotonic()
            events = model.stream(request)
            try:
                first: StreamEvent = await anext(events)
            except ModelError as error:
                failure: ModelError = error
            except StopAsyncIteration:
                failure = ModelResponseError(
                    f"the stream of model '{model.name}' ended without any event",
                    model=model.name,
                )
            except BaseException:
                await aclose_stream(events)
                raise
            else:
                return model, first, events, started
            await aclose_stream(events)
            latency = ms(self._clock.monotonic() - started)
            attempts.extend(attempts_from_error(failure, model=model.name, latency_ms=latency))
            errors.append(_named(failure, model))
        raise self._all_failed(errors, attempts) from errors[-1]

    async def aclose(self) -> None:
        """Close every model, even if closing one fails (the first failure is raised)."""
        failure: BaseException | None = None
        for model in self._models:
            try:
                await model.aclose()
            except Exception as error:  # noqa: BLE001 - closed the rest first, then raised
                failure = failure or error
        if failure is not None:
            raise failure

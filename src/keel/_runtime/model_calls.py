"""The model-call effect: send the run's messages to its model, journal the answer or failure.

The call is bounded by what is left of the run's wall time (measured by the runtime's clock):
the driver keeps one timer per stretch of driving at the run's wall-time deadline, which cuts
a model call still under way then (one timer per drive rather than one per call: with
thousands of runs at once, timers are what the event loop spends its time on).
A retryable failure that outlasted every retry and fallback pauses the run
(``model_unavailable``): its work is kept for when the model answers again. Any other failure
fails it. When someone follows the run's text, the model is asked to stream and each piece of
text is handed on as it arrives.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING

from keel._core.events import ErrorInfo, ModelFailed, ModelResponded, RunFinished, RunPaused
from keel._core.limits import LimitBreach
from keel._core.loop import CallModel
from keel._core.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    TextDelta,
    ToolCall,
)
from keel._runtime.call_guards import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    CallPlan,
    ended,
    guarded,
)
from keel.errors import ModelError, ModelResponseError, RateLimitedError
from keel.ports import Model

if TYPE_CHECKING:
    from keel._runtime.driver import DeltaSink, RunDriver
    from keel._runtime.scrubbing import StreamMask

__all__ = ["ModelCalls", "normalize_calls"]


def normalize_calls(
    message: AssistantMessage, step: int, earlier: Collection[str] = ()
) -> AssistantMessage:
    """Give every call of a run a distinct id: some local servers repeat or omit them, within
    a turn or from turn to turn (``call_0`` every time). Checks, decisions and results are
    keyed by call id, so a repeated id would let a later call pass for an earlier one."""
    ids = [call.id for call in message.tool_calls]
    if all(ids) and len(set(ids)) == len(ids) and not any(i in earlier for i in ids):
        return message
    calls = tuple(
        ToolCall(id=f"call_{step}_{i}", name=call.name, arguments=call.arguments)
        for i, call in enumerate(message.tool_calls)
    )
    return AssistantMessage(content=message.content, tool_calls=calls)


async def _streamed(
    model: Model,
    request: ModelRequest,
    sink: DeltaSink,
    run_id: str,
    step: int,
    *,
    mask: StreamMask | None,
) -> ModelResponse:
    response: ModelResponse | None = None
    async for event in model.stream(request):
        if isinstance(event, TextDelta):
            text = event.text if mask is None else mask.feed(event.text)
            if text:
                sink(run_id, step, text)
        elif isinstance(event, StreamComplete):
            response = event.response
    if mask is not None:
        rest = mask.flush()
        if rest:
            sink(run_id, step, rest)
    if response is None:
        raise ModelResponseError(f"the stream of model '{model.name}' ended without an answer")
    return response


class ModelCalls:
    """Performs :class:`keel._core.loop.CallModel`."""

    commit_first = False

    @staticmethod
    def _request(driver: RunDriver) -> ModelRequest:
        # One request object serves every step: its messages are the state's own list, which
        # the fold appends to.
        state = driver.state
        request = driver.request
        if request is None or request.messages is not state.messages:
            agent = driver.agent
            output = agent.loop_spec.output
            settings = agent.model_settings
            if driver.guards and settings.max_tokens is None:
                # A cost cap holds only if every call's output is bounded.
                settings = replace(settings, max_tokens=DEFAULT_MAX_OUTPUT_TOKENS)
            request = driver.request = ModelRequest(
                messages=state.messages,
                tools=driver.tool_definitions,
                output_schema=None if output is None else output.schema,
                output_name="output" if output is None else output.name,
                settings=settings,
            )
        return request

    @staticmethod
    async def _guarded(
        driver: RunDriver, effect: CallModel, request: ModelRequest
    ) -> tuple[CallPlan | None, bool]:
        """Ask the guards about the call: its plan, and whether it may be made (when not,
        the run is paused with the guard's reason)."""
        if not driver.guards:
            return None, True
        plan = CallPlan(
            state=driver.state,
            step=effect.step,
            models=driver.model_names_now(),
            prompt_tokens=driver.prompt_tokens(request),
            max_output_tokens=request.settings.max_tokens or DEFAULT_MAX_OUTPUT_TOKENS,
        )
        refused = await guarded(driver.guards, plan)
        if refused is not None:
            driver.record((RunPaused(reason=refused, at=driver.clock.now()),))
            return plan, False
        return plan, True

    async def perform(self, driver: RunDriver, effect: CallModel) -> None:
        state = driver.state
        clock = driver.clock
        request = self._request(driver)
        model = driver.model_now()
        model_name = model.name
        plan, allowed = await self._guarded(driver, effect, request)
        if not allowed:
            return
        sink = await driver.delta_sink()
        started = clock.monotonic()
        try:
            async with driver.wall_time:
                if sink is None:
                    response = await model.request(request)
                else:
                    response = await _streamed(
                        model, request, sink, state.run_id, effect.step, mask=driver.stream_mask()
                    )
                    await driver.deltas_sent()
        except ModelError as exc:
            await ended(driver.guards, plan, error=exc)
            latency = (clock.monotonic() - started) * 1000
            error = ErrorInfo(code=exc.code, message=exc.message)
            status = getattr(exc, "status", None)
            now = clock.now()
            failed = ModelFailed(
                step=effect.step,
                model=exc.model or model_name,
                error=error,
                retryable=exc.retryable,
                status=status if isinstance(status, int) else None,
                latency_ms=latency,
                attempts=exc.attempts,
                at=now,
            )
            if exc.retryable:
                # Every retry and fallback failed with errors that may pass (an outage, rate
                # limits): the run waits to be resumed rather than losing its work.
                limited = isinstance(exc, RateLimitedError)
                reason = ErrorInfo(
                    code="rate_limited" if limited else "model_unavailable",
                    message=f"{exc.message}; the run is paused: resume it once the model "
                    + ("has room again" if limited else "answers again"),
                )
                driver.record((failed, RunPaused(reason=reason, at=now)))
            else:
                driver.record((failed, RunFinished(status="failed", error=error, at=now)))
            return
        except TimeoutError:
            if not driver.wall_time.expired():
                raise
            breach = LimitBreach(
                limit="max_wall_time_s",
                allowed=state.limits.max_wall_time_s,
                observed=round(clock.now() - state.active_since, 3),
            )
            reason = ErrorInfo(code=breach.code, message=breach.message)
            driver.record((RunPaused(reason=reason, at=clock.now()),))
            return
        except Exception as exc:  # noqa: BLE001 - a broken custom model must not crash the run
            error = ErrorInfo(
                code="model_error",
                message=f"model '{model_name}' raised {type(exc).__name__}: {exc}",
            )
            now = clock.now()
            failed = ModelFailed(step=effect.step, model=model_name, error=error, at=now)
            driver.record((failed, RunFinished(status="failed", error=error, at=now)))
            return
        latency = (clock.monotonic() - started) * 1000
        served = response.served_by or model_name
        # A cached answer was not paid for; an unknown price is an unknown cost, not 0.
        cost = 0.0 if response.cached else driver.cost(served, response.usage)
        await ended(driver.guards, plan, response, cost)
        message = response.message
        if message.tool_calls:
            message = normalize_calls(message, effect.step, state.call_ids)
        event = ModelResponded(
            step=effect.step,
            model=served,
            message=message,
            usage=response.usage,
            cost_usd=cost,
            latency_ms=latency,
            finish_reason=response.finish_reason,
            attempts=response.attempts,
            cached=response.cached,
            route=response.route,
            at=clock.now(),
        )
        driver.record((event,))

"""Drives one run: ask the pure loop what to do, make its events durable, perform the effect.

The rule that makes runs recoverable: **events are appended to the store before any effect
is performed**, with one exception that costs no safety. A model's answer and the
``ToolCallStarted`` records of the calls it asked for reach the store in one append before any
tool runs. The results of tools that are safe to repeat (idempotent, or read-only) then ride
along with the next append instead of taking one of their own: if the process dies before it,
recovery finds calls started without a result and runs them again with the same idempotency key,
which is exactly what such tools allow. The result of a tool that is not safe to repeat is
appended at once, before anything else happens. So a step costs one durable append when its
tools are safe to repeat, two otherwise.

The runner keeps the run's state in memory and advances it with the same ``apply`` the fold
uses, so a step costs the same at step 1,000 as at step 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from keel._agent import Agent
from keel._core.events import (
    ErrorInfo,
    Event,
    ModelFailed,
    ModelResponded,
    RunFinished,
    RunPaused,
    ToolCallFinished,
)
from keel._core.limits import LimitBreach
from keel._core.loop import CallModel, RunTool, RunTools, decide
from keel._core.messages import AssistantMessage, Message, ModelRequest, ToolCall
from keel._core.pricing import Price, PriceTable
from keel._core.state import RunState, apply
from keel._core.usage import Usage
from keel._runtime.leases import LeaseKeeper
from keel._runtime.tool_calls import ToolExecutor, ToolOutcome, execute_tool
from keel._tools import RunContext
from keel.errors import ModelError
from keel.ports import Clock, Model, RunRecord, Store
from keel.resilience import Fallback

__all__ = ["RunDriver", "record_of"]

_PREVIEW = 200


def _preview(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 3] + "..."


def record_of(state: RunState, last_seq: int) -> RunRecord:
    """The summary row of a run in ``state``."""
    reason = state.reason
    return RunRecord(
        run_id=state.run_id,
        thread_id=state.thread_id,
        agent=state.agent,
        model=state.model,
        status=state.status,
        created_at=state.started_at,
        updated_at=state.updated_at,
        input=_preview(state.input) or "",
        steps=state.step,
        tool_calls=state.tool_calls,
        input_tokens=state.usage.input_tokens,
        output_tokens=state.usage.output_tokens,
        cost_usd=state.cost_usd,
        output_preview=_preview(state.output),
        reason_code=reason.code if reason else None,
        reason=reason.message if reason else None,
        last_seq=last_seq,
    )


def _normalize_calls(message: AssistantMessage, step: int) -> AssistantMessage:
    """Give every call of a turn a distinct id; some local servers repeat or omit them."""
    ids = [call.id for call in message.tool_calls]
    if all(ids) and len(set(ids)) == len(ids):
        return message
    calls = tuple(
        ToolCall(id=f"call_{step}_{i}", name=call.name, arguments=call.arguments)
        for i, call in enumerate(message.tool_calls)
    )
    return AssistantMessage(content=message.content, tool_calls=calls)


class RunDriver:
    """Advances one run until it finishes or pauses. One driver per run at a time."""

    def __init__(
        self,
        *,
        agent: Agent[Any],
        models: Sequence[Model],
        prices: PriceTable,
        store: Store,
        clock: Clock,
        deps: Any,
        state: RunState,
        last_seq: int,
        unsaved: Sequence[Event] = (),
        keeper: LeaseKeeper | None = None,
        executor: ToolExecutor = execute_tool,
        detached: bool = False,
    ) -> None:
        self._agent = agent
        if not models:
            raise ValueError("a run needs at least one model")
        self._models = list(models)
        # The model for each position in the chain: from there on, a fallback over the rest.
        self._from: dict[int, Model] = {}
        self._prices = prices
        # Served models are priced by name once: a fallback or router may serve any of several.
        self._prices_seen: dict[str, Price | None] = {}
        self._store = store
        self._clock = clock
        self._deps = deps
        self.state = state
        self._seq = last_seq
        # Events already applied to ``state`` but not yet in the store (e.g. RunStarted).
        self._pending: list[Event] = list(unsaved)
        self._keeper = keeper
        self._execute = executor
        # A detached run (a fork) has its source's thread for history, but its messages are
        # not added to that thread: the thread's conversation stays the source's.
        self._detached = detached
        # Whether every pending event is a result of a call that is safe to repeat, so that
        # the append may wait for the next model answer (see the module docstring).
        self._deferrable = False
        self._tools = agent.tools_by_name
        self._spec = replace(agent.loop_spec, models=len(self._models))
        output = agent.loop_spec.output
        self._output_schema = None if output is None else output.schema
        self._output_name = "output" if output is None else output.name
        self._request: ModelRequest | None = None

    @property
    def last_seq(self) -> int:
        """How many events of the run are in the store."""
        return self._seq

    async def drive(self) -> RunState:
        """Run until the run is no longer ``running``; every event is durable on return.

        Raises :class:`keel.errors.LeaseLostError` if another process took the run over.
        """
        state = self.state
        while True:
            decision = decide(state, self._spec, self._clock.now())
            self.record(decision.events)
            effect = decision.effect
            if effect is None:
                if state.status != "running":
                    await self._commit()
                    return state
                continue
            if self._keeper is not None and self._keeper.lost is not None:
                raise self._keeper.lost  # another process owns the run now: no more effects
            if isinstance(effect, CallModel):
                if not self._deferrable:
                    await self._commit()
                await self._call_model(effect)
            else:
                await self._commit()
                await self._run_tools(effect)

    def record(self, events: Sequence[Event]) -> None:
        """Apply events to the state; they reach the store before the next effect."""
        for event in events:
            apply(self.state, event)
            self._pending.append(event)

    async def _commit(self) -> None:
        if not self._pending:
            return
        state = self.state
        thread: Sequence[Message] = ()
        if state.status == "completed" and not self._detached:
            thread = state.own_messages
        self._seq = await self._store.append(
            state.run_id,
            self._pending,
            expected_seq=self._seq,
            record=record_of(state, self._seq + len(self._pending)),
            thread_messages=thread,
            lease=None if self._keeper is None else self._keeper.lease,
        )
        self._pending = []
        self._deferrable = False

    # -- effects ------------------------------------------------------------------------------

    async def _call_model(self, effect: CallModel) -> None:
        state = self.state
        # One request object serves every step: its messages are the state's own list, which
        # the fold appends to.
        request = self._request
        if request is None or request.messages is not state.messages:
            agent = self._agent
            request = self._request = ModelRequest(
                messages=state.messages,
                tools=agent.tool_definitions,
                output_schema=self._output_schema,
                output_name=self._output_name,
                settings=agent.model_settings,
            )
        remaining = state.limits.max_wall_time_s - (self._clock.now() - state.active_since)
        model = self._model_now()
        model_name = model.name
        started = self._clock.monotonic()
        deadline = asyncio.timeout(max(remaining, 0.0))
        try:
            async with deadline:
                response = await model.request(request)
        except ModelError as exc:
            latency = (self._clock.monotonic() - started) * 1000
            error = ErrorInfo(code=exc.code, message=exc.message)
            status = getattr(exc, "status", None)
            now = self._clock.now()
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
                reason = ErrorInfo(
                    code="model_unavailable",
                    message=f"{exc.message}; the run is paused: resume it once the model "
                    "answers again",
                )
                self.record((failed, RunPaused(reason=reason, at=now)))
            else:
                self.record((failed, RunFinished(status="failed", error=error, at=now)))
            return
        except TimeoutError:
            if not deadline.expired():
                raise
            breach = LimitBreach(
                limit="max_wall_time_s",
                allowed=state.limits.max_wall_time_s,
                observed=round(self._clock.now() - state.active_since, 3),
            )
            reason = ErrorInfo(code=breach.code, message=breach.message)
            self.record((RunPaused(reason=reason, at=self._clock.now()),))
            return
        except Exception as exc:  # noqa: BLE001 - a broken custom model must not crash the run
            error = ErrorInfo(
                code="model_error",
                message=f"model '{model_name}' raised {type(exc).__name__}: {exc}",
            )
            now = self._clock.now()
            failed = ModelFailed(step=effect.step, model=model_name, error=error, at=now)
            self.record((failed, RunFinished(status="failed", error=error, at=now)))
            return
        latency = (self._clock.monotonic() - started) * 1000
        served = response.served_by or model_name
        message = response.message
        if message.tool_calls:
            message = _normalize_calls(message, effect.step)
        event = ModelResponded(
            step=effect.step,
            model=served,
            message=message,
            usage=response.usage,
            # A cached answer was not paid for; an unknown price is an unknown cost, not 0.
            cost_usd=0.0 if response.cached else self._cost(served, response.usage),
            latency_ms=latency,
            finish_reason=response.finish_reason,
            attempts=response.attempts,
            cached=response.cached,
            route=response.route,
            at=self._clock.now(),
        )
        self.record((event,))

    def _model_now(self) -> Model:
        """The model the run is on: its chain from the current position (``model_index``)."""
        index = min(self.state.model_index, len(self._models) - 1)
        model = self._from.get(index)
        if model is None:
            rest = self._models[index:]
            model = self._from[index] = rest[0] if len(rest) == 1 else Fallback(*rest)
        return model

    def _cost(self, model: str, usage: Usage) -> float | None:
        if model not in self._prices_seen:
            self._prices_seen[model] = self._prices.price(model)
        price = self._prices_seen[model]
        return None if price is None else price.cost(usage)

    async def _run_tools(self, effect: RunTools) -> None:
        calls = effect.calls
        if len(calls) == 1:
            outcomes: Sequence[tuple[ToolOutcome, float]] = [await self._run_one(calls[0])]
        else:
            outcomes = await asyncio.gather(*(self._run_one(call) for call in calls))
        now = self._clock.now()
        self._deferrable = all(planned.spec.safe_to_repeat for planned in calls)
        self.record(
            tuple(
                ToolCallFinished(
                    step=effect.step,
                    call=planned.call,
                    result=outcome.result,
                    error=outcome.error,
                    latency_ms=latency,
                    attempts=outcome.attempts,
                    at=now,
                )
                for planned, (outcome, latency) in zip(calls, outcomes, strict=True)
            )
        )

    async def _run_one(self, planned: RunTool) -> tuple[ToolOutcome, float]:
        state = self.state
        call = planned.call
        context: RunContext[Any] = RunContext(
            deps=self._deps,
            run_id=state.run_id,
            thread_id=state.thread_id,
            agent=state.agent,
            step=state.step,
            tool_name=call.name,
            tool_call_id=call.id,
            idempotency_key=planned.idempotency_key,
            usage=state.usage,
        )
        timeout_s = planned.spec.timeout_s or state.limits.tool_timeout_s
        started = self._clock.monotonic()
        outcome = await self._execute(
            self._tools[call.name], context, planned.arguments, timeout_s=timeout_s
        )
        return outcome, (self._clock.monotonic() - started) * 1000

"""The agent loop as a pure state machine.

``decide(state, spec, now)`` looks at a run's state and returns the events to journal now and
the one effect (call the model, run tools) the runtime must perform next, if any. It does no I/O
and reads no clock (``now`` is passed in), so the loop is the same on every backend, replayable,
and testable without asyncio. The runtime's job is small: apply the events, make them durable,
perform the effect, turn its outcome into events, and ask again.

Order of decisions for a running run:

1. Tool calls of the latest model turn that have no result: refuse those past the per-turn
   limit, unknown ones and those with invalid arguments (the model gets an error it can act on);
   pause if the run's tool-call budget would be exceeded or a call repeats too often; apply a
   person's decisions (reject, confirm an interrupted effect, edit, approve); stop for a person
   (``ApprovalRequested``) if a call needs approval, or started before a crash and is not safe
   to repeat; otherwise start the valid ones.
2. A final answer (a turn with no tool calls): validate it against the output type; finish, or
   send it back with the validation error a bounded number of times, then fail.
3. Otherwise the model must be called: pause if a limit (steps, tokens, turns without progress,
   wall time) is reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from keel._core.events import (
    ApprovalRequested,
    CallDecided,
    ErrorInfo,
    Event,
    ModelSwitched,
    OutputRejected,
    PendingCall,
    RunFinished,
    RunPaused,
    ToolCallFinished,
    ToolCallStarted,
)
from keel._core.limits import LimitBreach
from keel._core.messages import ToolCall
from keel._core.output import OutputSpec, OutputValidationError
from keel._core.state import RunState, canonical_arguments, correction_message
from keel._core.toolspec import ToolArgumentsError, ToolSpec

__all__ = [
    "CallModel",
    "Decision",
    "LoopSpec",
    "RunTool",
    "RunTools",
    "decide",
    "idempotency_key",
    "limit_breach",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopSpec:
    """What the loop needs to know about an agent: its tools, its output type, and how many
    models its fallback chain has (a model that keeps failing validation hands over to the
    next one)."""

    tools: Mapping[str, ToolSpec] = field(default_factory=dict)
    output: OutputSpec | None = None
    models: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CallModel:
    """Effect: ask the model for turn ``step``."""

    step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTool:
    """One validated tool call, ready to run."""

    call: ToolCall
    spec: ToolSpec
    arguments: dict[str, object]
    idempotency_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTools:
    """Effect: run these calls (concurrently if more than one), then journal their results."""

    step: int
    calls: tuple[RunTool, ...]


Effect = CallModel | RunTools


@dataclass(frozen=True, slots=True)
class Decision:
    """Events to journal now, then the effect to perform (``None``: ask again, or stop)."""

    events: tuple[Event, ...] = ()
    effect: Effect | None = None


_NOTHING = Decision()


def idempotency_key(run_id: str, step: int, index: int) -> str:
    """The stable key of the ``index``-th tool call of turn ``step`` of a run."""
    return f"{run_id}:{step}:{index}"


def limit_breach(state: RunState, now: float) -> LimitBreach | None:
    """The first limit that forbids another model call, if any."""
    limits = state.limits
    if state.step >= limits.max_steps:
        return LimitBreach(limit="max_steps", allowed=limits.max_steps, observed=state.step)
    tokens = state.usage.total_tokens
    if tokens >= limits.max_total_tokens:
        return LimitBreach(
            limit="max_total_tokens", allowed=limits.max_total_tokens, observed=tokens
        )
    if state.turns_without_progress >= limits.max_turns_without_progress:
        return LimitBreach(
            limit="max_turns_without_progress",
            allowed=limits.max_turns_without_progress,
            observed=state.turns_without_progress,
            detail="every tool call of those turns failed",
        )
    elapsed = now - state.active_since
    if elapsed >= limits.max_wall_time_s:
        return LimitBreach(
            limit="max_wall_time_s", allowed=limits.max_wall_time_s, observed=round(elapsed, 3)
        )
    return None


def decide(state: RunState, spec: LoopSpec, now: float) -> Decision:
    """The events to journal and the next effect for ``state``; see the module docstring."""
    if state.status != "running":
        return _NOTHING
    if state.awaiting:
        return _plan_tools(state, spec, now)
    if state.final_text is not None:
        return _finish(state, spec, now)
    limits = state.limits
    if (
        state.turns_without_progress >= limits.max_turns_without_progress
        and state.model_index + 1 < spec.models
    ):
        error = ErrorInfo(
            code="limit.max_turns_without_progress",
            message=f"{state.turns_without_progress} model turns in a row where every tool "
            "call failed",
        )
        return Decision((_fall_back_or_pause(state, spec, error, now),))
    breach = limit_breach(state, now)
    if breach is not None:
        return Decision((_pause(breach.code, breach.message, now),))
    return Decision(effect=CallModel(step=state.step + 1))


def _pause(code: str, message: str, now: float) -> RunPaused:
    return RunPaused(reason=ErrorInfo(code=code, message=message), at=now)


def _reject(state: RunState, call: ToolCall, code: str, message: str, now: float) -> Event:
    return ToolCallFinished(
        step=state.step,
        call=call,
        result=f"Error: {message}",
        error=ErrorInfo(code=code, message=message),
        at=now,
    )


def _plan_tools(state: RunState, spec: LoopSpec, now: float) -> Decision:
    limits = state.limits
    # The awaiting calls keep the model's order; their position in the whole turn is needed
    # for stable idempotency keys, so look it up in the turn's message.
    positions = _positions(state)
    events: list[Event] = []
    runnable: list[tuple[ToolCall, int]] = []
    for call in state.awaiting.values():
        index = positions.get(call.id, 0)
        if index >= limits.max_tool_calls_per_turn:
            message = (
                f"only {limits.max_tool_calls_per_turn} tool calls run per turn; this call was "
                "not run. Make fewer calls at a time"
            )
            events.append(_reject(state, call, "limit.max_tool_calls_per_turn", message, now))
        else:
            runnable.append((call, index))
    breach = _tool_limit_breach(state, [call for call, _ in runnable])
    if breach is not None:
        return Decision((*events, _pause(breach.code, breach.message, now)))
    to_run: list[RunTool] = []
    starts: list[Event] = []
    waiting: list[PendingCall] = []
    for call, index in runnable:
        tool = spec.tools.get(call.name)
        decision = state.decisions.get(call.id)
        if tool is None:
            known = ", ".join(sorted(spec.tools)) or "none"
            message = f"there is no tool named '{call.name}'; available tools: {known}"
            events.append(_reject(state, call, "tool_unknown", message, now))
            continue
        if decision is not None and decision.decision in ("reject", "done"):
            events.append(_decided(state, call, decision, now))
            continue
        try:
            arguments = tool.validate(call.arguments)
        except ToolArgumentsError as exc:
            events.append(_reject(state, call, "tool_arguments_invalid", exc.message, now))
            continue
        key = idempotency_key(state.run_id, state.step, index)
        started = state.started.get(call.id)
        if decision is None and started is not None and not tool.safe_to_repeat:
            # It may or may not have had its effect before the process stopped: only a person
            # can tell, and running it again could do it twice.
            waiting.append(PendingCall(call=call, kind="interrupted", idempotency_key=key))
        elif decision is None and started is None and tool.needs_approval(arguments):
            waiting.append(PendingCall(call=call, kind="approval", idempotency_key=key))
        else:
            if started is None:
                starts.append(
                    ToolCallStarted(step=state.step, call=call, idempotency_key=key, at=now)
                )
            to_run.append(RunTool(call=call, spec=tool, arguments=arguments, idempotency_key=key))
    if waiting:
        # Nothing of this turn starts: a call journaled as started but not run would look
        # interrupted on resume.
        requested = ApprovalRequested(step=state.step, calls=tuple(waiting), at=now)
        return Decision((*events, requested))
    if not to_run:
        return Decision(tuple(events))
    return Decision((*events, *starts), RunTools(step=state.step, calls=tuple(to_run)))


def _tool_limit_breach(state: RunState, calls: list[ToolCall]) -> LimitBreach | None:
    limits = state.limits
    if calls and state.tool_calls + len(calls) > limits.max_tool_calls:
        return LimitBreach(
            limit="max_tool_calls",
            allowed=limits.max_tool_calls,
            observed=state.tool_calls + len(calls),
        )
    for call in calls:
        key = state.call_keys.get(call.id) or (call.name, canonical_arguments(call.arguments))
        count = state.call_counts.get(key, 0)
        if count > limits.max_repeated_calls:
            return LimitBreach(
                limit="max_repeated_calls",
                allowed=limits.max_repeated_calls,
                observed=count,
                detail=f"{call.name}({call.arguments}) was asked for {count} times",
            )
    return None


def _decided(state: RunState, call: ToolCall, decision: CallDecided, now: float) -> Event:
    """The result of a call a person rejected, or whose interrupted effect they confirmed."""
    if decision.decision == "done":
        return ToolCallFinished(step=state.step, call=call, result=decision.result or "", at=now)
    why = f": {decision.reason}" if decision.reason else ""
    message = f"a person ({decision.by}) rejected this call{why}"
    return _reject(state, call, "call_rejected", message, now)


def _positions(state: RunState) -> dict[str, int]:
    """The position of each awaiting call in its model turn."""
    for message in reversed(state.messages):
        if message.role == "assistant" and message.tool_calls:
            return {call.id: i for i, call in enumerate(message.tool_calls)}
    return {}


def _fall_back_or_pause(
    state: RunState,
    spec: LoopSpec,
    error: ErrorInfo,
    now: float,
    *,
    correction: str | None = None,
) -> Event:
    """A model keeps failing validation: hand over to the next model, or pause for a person."""
    if state.model_index + 1 < spec.models:
        return ModelSwitched(
            step=state.step,
            model_index=state.model_index + 1,
            reason=error,
            correction=correction,
            at=now,
        )
    fix = (
        "raise Limits(max_output_retries=...) and resume, or make the instructions clearer"
        if error.code == "output_invalid"
        else "raise Limits(max_turns_without_progress=...) and resume"
    )
    return RunPaused(reason=ErrorInfo(code=error.code, message=f"{error.message}; {fix}"), at=now)


def _finish(state: RunState, spec: LoopSpec, now: float) -> Decision:
    text = state.final_text or ""
    if spec.output is None:
        return Decision((RunFinished(status="completed", output=text, at=now),))
    try:
        output = spec.output.parse(text)
    except OutputValidationError as exc:
        if state.output_retries < state.limits.max_output_retries:
            return Decision((OutputRejected(step=state.step, error=exc.message, at=now),))
        attempts = state.output_retries + 1
        error = ErrorInfo(
            code="output_invalid",
            message=(
                f"the model's answer did not match the output type {spec.output.name} after "
                f"{attempts} attempt{'s' if attempts > 1 else ''}: {exc.message}"
            ),
        )
        correction = correction_message(exc.message)
        return Decision((_fall_back_or_pause(state, spec, error, now, correction=correction),))
    return Decision((RunFinished(status="completed", output=output, at=now),))

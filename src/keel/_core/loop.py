"""The agent loop as a pure state machine.

``decide(state, spec, now)`` looks at a run's state and returns the events to journal now and
the one effect the runtime must perform next, if any: call the model, run tools, or run the
checks of a point. It does no I/O and reads no clock (``now`` is passed in), so the loop is the
same on every backend, replayable, and testable without asyncio. The runtime's job is small:
apply the events, make them durable, perform the effect, turn its outcome into events, and ask
again. Effects are data (:mod:`keel._core.effects`); the runtime keeps one handler per kind.
What the checks of each point said is read by the gates (:mod:`keel._core.gates`).

Order of decisions for a running run:

1. The input's checks, before the first model call.
2. Tool calls of the latest model turn that have no result: refuse those past the per-turn
   limit, unknown ones and those with invalid arguments (the model gets an error it can act on);
   pause if the run's tool-call budget would be exceeded or a call repeats too often; run the
   tool-call checks; apply a person's decisions (reject, confirm an interrupted effect, edit,
   approve); stop for a person (``ApprovalRequested``) if a call needs approval, was escalated
   by a check, or started before a crash (or timed out) and is not safe to repeat; otherwise
   start the valid ones (only the next one, in order, when ``spec.sequential``). A call of a
   handoff tool waits for the turn's other calls, then is the effect ``HandOff``. A decision
   covers one attempt: a call that runs again after one is journaled as started again, so an
   interruption of that attempt goes back to a person.
3. The tool-result checks of the calls that ran.
4. A final answer (a turn with no tool calls): its checks (a refused answer goes back to the
   model, like an invalid one); validate it against the output type; finish, or send it back
   with the validation error a bounded number of times, then fail.
5. Otherwise the model must be called: pause if a limit (steps, tokens, turns without
   progress, wall time) is reached; run the model-call checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keel._core.checks import CheckPoint
from keel._core.effects import (
    CallModel,
    CheckSubject,
    Decision,
    Effect,
    HandOff,
    RunChecks,
    RunTool,
    RunTools,
)
from keel._core.eventbase import FINISHED, ErrorInfo, Event
from keel._core.events_model import ModelSwitched, OutputRejected
from keel._core.events_run import RunFinished, RunPaused
from keel._core.events_tools import (
    ApprovalRequested,
    CallDecided,
    PendingCall,
    ToolCallFinished,
    ToolCallStarted,
)
from keel._core.gates import (
    denial,
    escalated,
    input_gate,
    model_call_gate,
    output_gate,
    pause,
    rejection,
    result_gate,
)
from keel._core.limits import LimitBreach
from keel._core.messages import ToolCall
from keel._core.output import OutputSpec, OutputValidationError
from keel._core.state import RunState, canonical_arguments, correction_message
from keel._core.toolspec import ToolArgumentsError, ToolSpec

__all__ = [
    "CallModel",
    "CheckSubject",
    "Decision",
    "Effect",
    "HandOff",
    "LoopSpec",
    "RunChecks",
    "RunTool",
    "RunTools",
    "decide",
    "idempotency_key",
    "limit_breach",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopSpec:
    """What the loop needs to know about an agent: its tools (those of the run), its output
    type, how many models its fallback chain has (a model that keeps failing validation hands
    over to the next one), the names of the checks at each point, its handoff tools, and
    whether a turn's calls run one at a time."""

    tools: Mapping[str, ToolSpec] = field(default_factory=dict)
    output: OutputSpec | None = None
    models: int = 1
    checks: Mapping[CheckPoint, tuple[str, ...]] = field(default_factory=dict)
    #: The agents the run may be handed to, by the name of the tool that does it.
    handoffs: Mapping[str, str] = field(default_factory=dict)
    #: Run a turn's tool calls one at a time, in order, rather than concurrently.
    sequential: bool = False


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
    if state.cancelling is not None:
        return _finish_cancelled(state, now)
    if state.status != "running":
        return _NOTHING
    checks = spec.checks
    if checks and state.step == 0 and checks.get("input"):
        gate = input_gate(state, now)
        if gate is not None:
            return gate
    if state.awaiting:
        return _plan_tools(state, spec, now)
    if checks and checks.get("tool_result"):
        gate = result_gate(state, now)
        if gate is not None:
            return gate
    if state.final_text is not None:
        if checks and checks.get("output"):
            gate = output_gate(state, now)
            if gate is not None:
                return gate
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
        return Decision((pause(breach.code, breach.message, now),))
    step = state.step + 1
    if checks and checks.get("model_call"):
        gate = model_call_gate(state, step, now)
        if gate is not None:
            return gate
    return Decision(effect=CallModel(step=step))


def _reject(state: RunState, call: ToolCall, code: str, message: str, now: float) -> Event:
    return ToolCallFinished(
        step=state.step,
        call=call,
        result=f"Error: {message}",
        error=ErrorInfo(code=code, message=message),
        at=now,
    )


# -- tool calls -------------------------------------------------------------------------------


def _plan_tools(state: RunState, spec: LoopSpec, now: float) -> Decision:
    limits = state.limits
    # The awaiting calls keep the model's order; their position in the whole turn is needed
    # for stable idempotency keys, so look it up in the turn's message.
    positions = _positions(state)
    events: list[Event] = []
    runnable: list[tuple[ToolCall, int]] = []
    handoffs: list[ToolCall] = []
    for call in state.awaiting.values():
        if call.name in spec.handoffs and call.name not in spec.tools:
            handoffs.append(call)  # taken once the turn's other calls are done
            continue
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
        return Decision((*events, pause(breach.code, breach.message, now)))
    if handoffs and not runnable and not events:
        return _hand_off(state, spec, handoffs, now)
    checked_calls = bool(spec.checks and spec.checks.get("tool_call"))
    to_run: list[RunTool] = []
    starts: list[ToolCallStarted] = []
    waiting: list[PendingCall] = []
    unchecked: list[CheckSubject] = []
    for call, index in runnable:
        plan = _plan_call(state, spec, call, index, checked=checked_calls, now=now)
        if isinstance(plan, RunTool):
            to_run.append(plan)
        elif isinstance(plan, tuple):
            starts.append(plan[0])
            to_run.append(plan[1])
        elif isinstance(plan, PendingCall):
            waiting.append(plan)
        elif isinstance(plan, CheckSubject):
            unchecked.append(plan)
        else:
            events.append(plan)
    if unchecked:
        effect = RunChecks(step=state.step, point="tool_call", subjects=tuple(unchecked))
        return Decision(tuple(events), effect)
    if waiting:
        # Nothing of this turn starts: a call journaled as started but not run would look
        # interrupted on resume.
        requested = ApprovalRequested(step=state.step, calls=tuple(waiting), at=now)
        return Decision((*events, requested))
    if not to_run:
        return Decision(tuple(events))
    if spec.sequential and len(to_run) > 1:
        # One call at a time, in the model's order: only the next one is journaled as
        # started, so after a crash the later ones are known never to have run.
        to_run = to_run[:1]
        starts = [start for start in starts if start.call.id == to_run[0].call.id]
    return Decision((*events, *starts), RunTools(step=state.step, calls=tuple(to_run)))


def _hand_off(state: RunState, spec: LoopSpec, calls: list[ToolCall], now: float) -> Decision:
    """The turn's handoff, once its other calls are done: the first one asked for is taken,
    any other is refused."""
    first, *others = calls
    events = tuple(
        _reject(
            state,
            call,
            "handoff_refused",
            f"the conversation was already handed over with {first.name}; one handoff a turn",
            now,
        )
        for call in others
    )
    effect = HandOff(step=state.step, call=first, agent=spec.handoffs[first.name])
    return Decision(events, effect)


def _plan_call(
    state: RunState, spec: LoopSpec, call: ToolCall, index: int, *, checked: bool, now: float
) -> RunTool | tuple[ToolCallStarted, RunTool] | PendingCall | CheckSubject | Event:
    """What becomes of one call of the turn: a result without running it (an event), its
    checks, a person's decision, a run again after a crash (``RunTool``), or a new attempt
    journaled as started first (its ``ToolCallStarted`` and the call)."""
    tool = spec.tools.get(call.name)
    decision = state.decisions.get(call.id)
    started = state.started.get(call.id)
    if tool is None:
        known = ", ".join(sorted(spec.tools)) or "none"
        message = f"there is no tool named '{call.name}'; available tools: {known}"
        return _reject(state, call, "tool_unknown", message, now)
    if decision is not None and decision.decision in ("reject", "done"):
        return _decided(state, call, decision, now)
    try:
        arguments = tool.validate(call.arguments)
    except ToolArgumentsError as exc:
        return _reject(state, call, "tool_arguments_invalid", exc.message, now)
    key = idempotency_key(state.run_id, state.step, index)
    if checked and started is None:
        verdict = state.checks.get(("tool_call", call.id))
        if verdict is None:
            return CheckSubject(subject=call.id, call=call, arguments=arguments)
        if verdict.verdict == "deny":
            return _reject(state, call, "check.denied", denial(verdict), now)
        if verdict.verdict == "escalate" and decision is None:
            return escalated(call, verdict, key)
    if started is not None and decision is None:
        if tool.safe_to_repeat:  # run again after a crash, with the same key
            return _planned(call, tool, arguments, key, started.attempt)
        # It may or may not have had its effect before the process stopped (or the call
        # timed out): only a person can tell, and running it again could do it twice.
        doubt = state.in_doubt.get(call.id)
        return PendingCall(
            call=call,
            kind="interrupted",
            idempotency_key=key,
            reason=None if doubt is None else doubt.message,
        )
    if started is None and decision is None and tool.needs_approval(arguments):
        return PendingCall(call=call, kind="approval", idempotency_key=key)
    # A first attempt, or a new one that a person's decision allows: journaled as started
    # before it runs, and the decision is used up by it.
    attempt = 1 if started is None else started.attempt + 1
    start = ToolCallStarted(
        step=state.step,
        call=call,
        idempotency_key=key,
        attempt=attempt,
        repeatable=tool.safe_to_repeat,
        at=now,
    )
    return start, _planned(call, tool, arguments, key, attempt)


def _planned(
    call: ToolCall, tool: ToolSpec, arguments: dict[str, Any], key: str, attempt: int
) -> RunTool:
    return RunTool(call=call, spec=tool, arguments=arguments, idempotency_key=key, attempt=attempt)


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
    return _reject(state, call, "call_rejected", rejection(decision, "call"), now)


def _positions(state: RunState) -> dict[str, int]:
    """The position of each awaiting call in its model turn."""
    return state.positions


def _finish_cancelled(state: RunState, now: float) -> Decision:
    """A run cancelled while effects were in doubt: once people have said what became of
    them, their results are journaled and the run ends as cancelled."""
    if state.pending or state.status in FINISHED:
        return _NOTHING
    events: list[Event] = []
    for call_id, started in state.started.items():
        decision = state.decisions.get(call_id)
        if decision is not None and decision.decision == "done":
            events.append(
                ToolCallFinished(
                    step=started.step, call=started.call, result=decision.result or "", at=now
                )
            )
        else:
            message = "the run was cancelled; this call's effect did not happen"
            if decision is not None and decision.decision == "reject":
                message = rejection(decision, "call") + "; the run was cancelled"
            events.append(
                ToolCallFinished(
                    step=started.step,
                    call=started.call,
                    result=f"Error: {message}",
                    error=ErrorInfo(code="cancelled", message=message),
                    at=now,
                )
            )
    reason = state.cancelling
    events.append(RunFinished(status="cancelled", error=reason, at=now))
    return Decision(tuple(events))


# -- the end ------------------------------------------------------------------------------------


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

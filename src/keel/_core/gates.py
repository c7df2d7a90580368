"""The loop's gates: what the checks of a point said, and what happens next.

Each gate looks at one point of a run (the input, the latest turn's tool results, the next
model call, the final answer): it asks for the checks when they have not answered yet
(:class:`RunChecks`), stops for a person when one escalated and nobody decided, and turns a
refusal into the right ending (a failed run, a pause, an answer sent back). ``None`` means the
point is clear.
"""

from __future__ import annotations

from keel._core.checks import subject_of
from keel._core.effects import CheckSubject, Decision, RunChecks
from keel._core.eventbase import ErrorInfo
from keel._core.events_checks import ChecksDecided
from keel._core.events_model import OutputRejected
from keel._core.events_run import RunFinished, RunPaused
from keel._core.events_tools import ApprovalRequested, CallDecided, PendingCall
from keel._core.messages import ToolCall, ToolResultMessage
from keel._core.state import RunState

__all__ = [
    "denial",
    "escalated",
    "input_gate",
    "model_call_gate",
    "output_gate",
    "pause",
    "rejection",
    "result_gate",
    "text_json",
]


def pause(code: str, message: str, now: float) -> RunPaused:
    """The event that pauses a run, saying why."""
    return RunPaused(reason=ErrorInfo(code=code, message=message), at=now)


def escalated(subject: ToolCall, checked: ChecksDecided, key: str = "") -> PendingCall:
    return PendingCall(
        call=subject,
        kind="escalated",
        idempotency_key=key,
        reason=checked.reason,
        check=checked.deciding_check,
    )


def denial(checked: ChecksDecided) -> str:
    why = f": {checked.reason}" if checked.reason else ""
    return f"check '{checked.deciding_check}' denied this{why}"


def rejection(decision: CallDecided, what: str) -> str:
    why = f": {decision.reason}" if decision.reason else ""
    return f"a person ({decision.by}) rejected this {what}{why}"


# -- checks of the input, the results and the model call ------------------------------------


def input_gate(state: RunState, now: float) -> Decision | None:
    """Before the first model call: the input's checks, and what they said."""
    checked = state.checks.get(("input", "input"))
    if checked is None:
        text = state.messages[state.first_own_message].content
        subject = CheckSubject(subject="input", text=text if isinstance(text, str) else None)
        return Decision(effect=RunChecks(step=0, point="input", subjects=(subject,)))
    if checked.verdict == "deny":
        error = ErrorInfo(code="check.denied", message=f"the input was refused: {denial(checked)}")
        return Decision((RunFinished(status="failed", error=error, at=now),))
    if checked.verdict == "escalate":
        decision = state.decisions.get("input")
        if decision is None:
            pseudo = ToolCall(id="input", name="input", arguments=text_json(state.input))
            return Decision(
                (ApprovalRequested(step=0, calls=(escalated(pseudo, checked),), at=now),)
            )
        if decision.decision == "reject":
            error = ErrorInfo(
                code="check.rejected",
                message=f"the input was refused: {rejection(decision, 'input')}",
            )
            return Decision((RunFinished(status="failed", error=error, at=now),))
    return None


def result_gate(state: RunState, now: float) -> Decision | None:
    """The checks of the latest turn's tool results, and what waits for a person."""
    unchecked: list[CheckSubject] = []
    waiting: list[PendingCall] = []
    for index in range(max(state.turn_index, 0), len(state.messages)):
        message = state.messages[index]
        if not isinstance(message, ToolResultMessage) or message.tool_call_id not in state.ran:
            continue
        subject = subject_of("tool_result", call_id=message.tool_call_id)
        checked = state.checks.get(("tool_result", subject))
        if checked is None:
            call = ToolCall(id=message.tool_call_id, name=message.name)
            unchecked.append(CheckSubject(subject=subject, text=message.content, call=call))
        elif checked.verdict == "escalate" and subject in state.withheld:
            pseudo = ToolCall(
                id=subject, name=message.name, arguments=text_json(state.withheld[subject])
            )
            waiting.append(escalated(pseudo, checked))
    if unchecked:
        return Decision(
            effect=RunChecks(step=state.step, point="tool_result", subjects=tuple(unchecked))
        )
    if waiting:
        return Decision((ApprovalRequested(step=state.step, calls=tuple(waiting), at=now),))
    return None


def model_call_gate(state: RunState, step: int, now: float) -> Decision | None:
    subject = subject_of("model_call", step=step)
    checked = state.checks.get(("model_call", subject))
    if checked is None:
        return Decision(
            effect=RunChecks(
                step=step, point="model_call", subjects=(CheckSubject(subject=subject),)
            )
        )
    if checked.verdict == "deny":
        message = f"a model call was refused: {denial(checked)}; resume the run to ask again"
        return Decision((pause("check.denied", message, now),))
    if checked.verdict == "escalate":
        decision = state.decisions.get(subject)
        if decision is None:
            pseudo = ToolCall(id=subject, name="model_call")
            return Decision(
                (ApprovalRequested(step=state.step, calls=(escalated(pseudo, checked),), at=now),)
            )
        if decision.decision == "reject":
            error = ErrorInfo(
                code="check.rejected",
                message=f"a model call was refused: {rejection(decision, 'model call')}",
            )
            return Decision((RunFinished(status="failed", error=error, at=now),))
    return None


def text_json(text: str) -> str:
    from pydantic_core import to_json

    return to_json({"text": text}).decode()


def output_gate(state: RunState, now: float) -> Decision | None:
    """A final answer's checks: a refused answer goes back to the model with the reason (as
    an invalid one does, within ``max_output_retries``), then the run fails."""
    subject = subject_of("output", step=state.step)
    checked = state.checks.get(("output", subject))
    if checked is None:
        subjects = (CheckSubject(subject=subject, text=state.final_text),)
        return Decision(effect=RunChecks(step=state.step, point="output", subjects=subjects))
    if checked.verdict == "deny":
        refused = f"the answer was refused: {denial(checked)}"
        if state.output_retries < state.limits.max_output_retries:
            rejected = OutputRejected(
                step=state.step, error=refused, withheld=checked.deciding_check, at=now
            )
            return Decision((rejected,))
        error = ErrorInfo(code="check.denied", message=refused)
        return Decision((RunFinished(status="failed", error=error, at=now),))
    if checked.verdict == "escalate":
        decision = state.decisions.get(subject)
        if decision is None:
            pseudo = ToolCall(
                id=subject, name="output", arguments=text_json(state.final_text or "")
            )
            return Decision(
                (ApprovalRequested(step=state.step, calls=(escalated(pseudo, checked),), at=now),)
            )
        if decision.decision == "reject":
            error = ErrorInfo(
                code="check.rejected",
                message=f"the answer was refused: {rejection(decision, 'answer')}",
            )
            return Decision((RunFinished(status="failed", error=error, at=now),))
    return None

"""Events of tool calls and of the people who decide on them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from keel._core.delegation import ChildRun, roll_up
from keel._core.eventbase import ErrorInfo, Event, ForkCopy, event_kind
from keel._core.messages import AssistantMessage, ToolCall, ToolResultMessage

if TYPE_CHECKING:
    from keel._core.state import RunState
    from keel._core.steps import StepBuilder

__all__ = [
    "ApprovalRequested",
    "CallDecided",
    "Decision",
    "PendingCall",
    "ToolCallFinished",
    "ToolCallInDoubt",
    "ToolCallStarted",
    "replace_result",
]


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallStarted(Event):
    """An attempt at a validated tool call is about to run. Journaled before the tool is
    called; each new attempt of a call (after a person's decision) is journaled anew."""

    step: int
    call: ToolCall
    idempotency_key: str
    #: 1 for the first attempt, 2 after a person let an interrupted call run again, ...
    attempt: int = 1
    #: Whether the tool was safe to repeat when the call started (``None``: not recorded),
    #: so that a process without the agent (``keel cancel``) knows which effects are in doubt.
    repeatable: bool | None = None
    type: Literal["tool_call_started"] = "tool_call_started"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        call_id = self.call.id
        state.started[call_id] = self
        if self.attempt == 1:
            state.started_calls.append(self.call)
        # A decision covers one attempt: this start uses it up.
        state.decisions.pop(call_id, None)
        state.in_doubt.pop(call_id, None)

    def fork(self, copy: ForkCopy) -> ToolCallStarted | None:
        return self if self.step <= copy.at_step else None

    def place(self, steps: StepBuilder) -> None:
        found = steps.call(self.call.id)
        if found is None:
            steps.place(self)
            return
        found.started = self
        found.attempts += 1


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallFinished(Event):
    """A tool call ended. ``result`` is what the model sees; ``error`` is set when it failed.

    A call rejected before running (unknown tool, malformed or invalid arguments, a check's
    denial) has a ``ToolCallFinished`` with an error and no ``ToolCallStarted``. A result
    longer than the tool's cap is kept cut, once: ``result_chars`` is its full length.
    ``children`` are the runs the call started (:mod:`keel._core.delegation`): what they used
    and cost is added to this run's totals here, once.
    """

    step: int
    call: ToolCall
    result: str
    error: ErrorInfo | None = None
    latency_ms: float = 0.0
    #: How many tries it took (tools with retries).
    attempts: int = 1
    result_chars: int | None = None
    children: tuple[ChildRun, ...] = ()
    type: Literal["tool_call_finished"] = "tool_call_finished"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        call_id = self.call.id
        if state.started.pop(call_id, None) is not None:
            state.ran.add(call_id)
        state.in_doubt.pop(call_id, None)
        state.awaiting.pop(call_id, None)
        state.tool_calls += 1
        if self.children:
            roll_up(state, self.children)
        if self.error is None:
            state.turn_successes += 1
        if not state.awaiting:  # the turn's last result: did any call of it succeed?
            progress = state.turn_successes > 0
            state.turns_without_progress = 0 if progress else state.turns_without_progress + 1
        result = ToolResultMessage(
            tool_call_id=call_id,
            name=self.call.name,
            content=self.result,
            is_error=self.error is not None,
        )
        # Results stand in the order of the model's calls, whichever ended first (a call
        # refused before running ends before the others).
        messages = state.messages
        place = state.positions.get(call_id)
        index = len(messages)
        while place is not None and index - 1 > state.turn_index:
            before = messages[index - 1]
            if not isinstance(before, ToolResultMessage):
                break
            if state.positions.get(before.tool_call_id, -1) <= place:
                break
            index -= 1
        messages.insert(index, result)

    def fork(self, copy: ForkCopy) -> ToolCallFinished | None:
        if self.step > copy.at_step:
            return None
        edited = copy.edits.pop(self.call.id, None)
        return self if edited is None else replace(self, result=edited, error=None)

    def place(self, steps: StepBuilder) -> None:
        found = steps.call(self.call.id)
        if found is None:
            steps.place(self)
        else:
            found.finished = self


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallInDoubt(Event):
    """A started call that is not safe to repeat did not come back (it timed out, or the run
    was cancelled while it ran): its effect may or may not have happened, so a person is
    asked, as after a crash."""

    step: int
    call: ToolCall
    reason: ErrorInfo
    type: Literal["tool_call_in_doubt"] = "tool_call_in_doubt"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        state.in_doubt[self.call.id] = self.reason

    def fork(self, copy: ForkCopy) -> ToolCallInDoubt | None:
        return self if self.step <= copy.at_step else None


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingCall:
    """Something a person must decide on, named by ``call.id``:

    - ``approval``: a tool call that needs approval;
    - ``interrupted``: a call that started and did not come back (a crash, a timeout, a
      cancel) and is not safe to repeat: did its effect happen?
    - ``escalated``: a check handed the decision to a person (``reason`` says why). For a
      tool call, ``call`` is that call; for the input, a tool result, a model call or the
      final answer it names the subject: ids ``input``, ``result:<call id>``,
      ``model_call:<step>``, ``output:<step>`` (its arguments hold the answer as ``text``).
    """

    call: ToolCall
    kind: Literal["approval", "interrupted", "escalated"]
    idempotency_key: str
    reason: str | None = None
    #: The check that escalated (``escalated`` only).
    check: str | None = None


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequested(Event):
    """The run stopped until a person decides on each of ``calls``."""

    step: int
    calls: tuple[PendingCall, ...]
    type: Literal["approval_requested"] = "approval_requested"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        state.status = "awaiting_approval"
        state.pending = {pending.call.id: pending for pending in self.calls}
        state.pending_since = self.at

    def fork(self, copy: ForkCopy) -> ApprovalRequested | None:
        return self if self.step <= copy.at_step else None


Decision = Literal["approve", "reject", "edit", "done"]
"""``approve``: go on (run the call, once more for an interrupted one); ``edit``: run it with
new arguments; ``reject``: do not, and the model is told why; ``done``: an interrupted call's
effect did happen, and ``result`` is what it returned."""


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class CallDecided(Event):
    """A person decided on a pending call. Who decided and when is kept with the decision.
    The decision covers the call's next attempt only."""

    call_id: str
    decision: Decision
    by: str
    reason: str | None = None
    arguments: str | None = None
    result: str | None = None
    type: Literal["call_decided"] = "call_decided"
    v: Literal[1] = 1
    external: ClassVar[bool] = True

    def fold(self, state: RunState) -> None:
        state.decisions[self.call_id] = self
        state.pending.pop(self.call_id, None)
        withheld = state.withheld.pop(self.call_id, None)
        if withheld is not None:
            # A tool result a check held back: the person's decision is what the model sees.
            if self.decision == "reject":
                why = f": {self.reason}" if self.reason else ""
                text = f"Error: a person ({self.by}) withheld this result{why}"
                replace_result(state, self.call_id.removeprefix("result:"), text, error=True)
            else:
                replace_result(state, self.call_id.removeprefix("result:"), withheld)
            return
        if self.decision == "edit" and self.arguments is not None:
            rewrite_call(state, self.call_id, self.arguments)

    def fork(self, copy: ForkCopy) -> CallDecided | None:
        call_id = self.call_id.removeprefix("result:")
        return self if call_id in copy.calls else None

    def place(self, steps: StepBuilder) -> None:
        step = steps.step_of_call(self.call_id.removeprefix("result:"))
        if step is None:
            steps.place(self)
        else:
            step.decisions.append(self)


def rewrite_call(state: RunState, call_id: str, arguments: str) -> None:
    """Replace a call's arguments, in the calls that wait and in the model's turn, so that
    the conversation shows the call that actually ran next to its result."""
    call = state.awaiting.get(call_id)
    turn = state.messages[state.turn_index] if state.turn_index >= 0 else None
    if call is None or not isinstance(turn, AssistantMessage):
        return
    edited = replace(call, arguments=arguments)
    state.awaiting[call_id] = edited
    state.messages[state.turn_index] = replace(
        turn, tool_calls=tuple(edited if c.id == call_id else c for c in turn.tool_calls)
    )


def replace_result(state: RunState, call_id: str, content: str, *, error: bool = False) -> None:
    """Change what the model sees as a call's result in the latest turn."""
    messages = state.messages
    for index in range(len(messages) - 1, max(state.turn_index, -1), -1):
        message = messages[index]
        if isinstance(message, ToolResultMessage) and message.tool_call_id == call_id:
            messages[index] = replace(message, content=content, is_error=error)
            return

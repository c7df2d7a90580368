"""A run's state as a fold over its journal.

``fold(events, history)`` rebuilds the state from scratch; ``apply(state, event)`` advances it by
one event. ``apply`` updates the state in place and returns it: a run's message list is appended
to, never copied, so the cost of a step does not grow with the length of the run. Callers that
need an unchanged copy fold again from the journal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, assert_never

from pydantic_core import from_json, to_json

from keel._core.events import (
    ApprovalRequested,
    CallDecided,
    ErrorInfo,
    Event,
    ModelFailed,
    ModelResponded,
    ModelSwitched,
    OutputRejected,
    PendingCall,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    RunStatus,
    ToolCallFinished,
    ToolCallStarted,
)
from keel._core.limits import Limits
from keel._core.messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from keel._core.usage import Usage

__all__ = [
    "CORRECTION_PREFIX",
    "RunState",
    "apply",
    "canonical_arguments",
    "correction_message",
    "fold",
    "start",
]


@dataclass(slots=True, kw_only=True)
class RunState:
    """Everything known about a run, derived from its events."""

    run_id: str
    thread_id: str
    agent: str
    model: str
    input: str
    limits: Limits
    status: RunStatus = "running"
    messages: list[Message] = field(default_factory=list)
    history_count: int = 0
    #: Index in ``messages`` of this run's own first message (its user input).
    first_own_message: int = 0
    step: int = 0
    tool_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0
    #: Tool calls of the latest model turn that have no result yet, in the model's order.
    awaiting: dict[str, ToolCall] = field(default_factory=dict)
    #: Calls journaled as started whose result is not journaled.
    started: dict[str, ToolCallStarted] = field(default_factory=dict)
    #: The latest model turn's text when it made no tool calls: a candidate final answer.
    final_text: str | None = None
    output_retries: int = 0
    output: Any = None
    reason: ErrorInfo | None = None
    started_at: float = 0.0
    #: When the run last started or resumed; wall-time limits count from here.
    active_since: float = 0.0
    updated_at: float = 0.0
    event_count: int = 0
    agent_ref: str | None = None
    history_seq: int | None = None
    forked_from: str | None = None
    #: Index in ``messages`` of the latest assistant turn that made tool calls.
    turn_index: int = -1
    #: Calls of the latest turn waiting for a person, and the decisions made on them.
    pending: dict[str, PendingCall] = field(default_factory=dict)
    decisions: dict[str, CallDecided] = field(default_factory=dict)
    #: How often each (tool, canonical arguments) pair was asked for in this run, and that
    #: pair for each call of the latest turn (computed once: canonicalizing costs a JSON trip).
    call_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    call_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Successful tool results in the latest turn, and turns in a row where every call failed.
    turn_successes: int = 0
    turns_without_progress: int = 0
    #: Which model of the agent's fallback chain answers (0: the first).
    model_index: int = 0

    @property
    def own_messages(self) -> list[Message]:
        """The messages this run added to its thread (input onwards, no instructions)."""
        return self.messages[self.first_own_message :]


CORRECTION_PREFIX = "Your answer did not match the required output schema"
"""How every correction message begins; models (like the rules model) may look for it."""


def correction_message(error: str) -> str:
    """What the model is told when its final answer fails the output schema."""
    return (
        f"{CORRECTION_PREFIX}:\n"
        f"{error}\n"
        "Reply again with only a JSON value that satisfies the schema."
    )


def canonical_arguments(arguments: str) -> str:
    """Arguments in one spelling (sorted keys, no spaces), so equal calls compare equal.

    Text that is not JSON is its own spelling. (pydantic-core's parser and serializer: about
    four times faster than the json module's, and this runs for every call.)
    """
    try:
        return to_json(_sorted(from_json(arguments))).decode()
    except ValueError:
        return arguments


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def start(event: RunStarted, history: Sequence[Message] = ()) -> RunState:
    """The state right after ``event``, given the thread's history.

    ``history`` is the thread's messages up to ``event.history_seq`` (or, for journals without
    it, at least its first ``history_count`` messages).
    """
    messages: list[Message] = []
    if event.instructions:
        messages.append(SystemMessage(content=event.instructions))
    messages.extend(history if event.history_seq is not None else history[: event.history_count])
    first_own = len(messages)
    messages.append(UserMessage(content=event.input))
    return RunState(
        run_id=event.run_id,
        thread_id=event.thread_id,
        agent=event.agent,
        model=event.model,
        input=event.input,
        limits=event.limits,
        messages=messages,
        history_count=event.history_count,
        first_own_message=first_own,
        started_at=event.at,
        active_since=event.at,
        updated_at=event.at,
        event_count=1,
        agent_ref=event.agent_ref,
        history_seq=event.history_seq,
        forked_from=event.forked_from,
    )


def apply(state: RunState, event: Event) -> RunState:
    """Advance ``state`` by one event (in place) and return it."""
    state.event_count += 1
    state.updated_at = event.at
    if isinstance(event, ModelResponded):
        _model_responded(state, event)
    elif isinstance(event, ToolCallStarted):
        state.started[event.call.id] = event
    elif isinstance(event, ToolCallFinished):
        _tool_call_finished(state, event)
    elif isinstance(event, ApprovalRequested):
        state.status = "awaiting_approval"
        state.pending = {pending.call.id: pending for pending in event.calls}
    elif isinstance(event, CallDecided):
        _call_decided(state, event)
    elif isinstance(event, ModelSwitched):
        state.model_index = event.model_index
        state.output_retries = 0
        state.turns_without_progress = 0
        if event.correction is not None:
            # The next model answers afresh, told what was wrong with the last answer.
            state.final_text = None
            state.messages.append(UserMessage(content=event.correction))
    elif isinstance(event, OutputRejected):
        state.output_retries += 1
        state.final_text = None
        state.messages.append(UserMessage(content=correction_message(event.error)))
    elif isinstance(event, ModelFailed):
        state.reason = event.error
    elif isinstance(event, RunPaused):
        state.status = "paused"
        state.reason = event.reason
    elif isinstance(event, RunResumed):
        state.status = "running"
        state.pending = {}
        state.limits = event.limits
        state.reason = None
        state.active_since = event.at
    elif isinstance(event, RunFinished):
        state.status = event.status
        state.output = event.output
        state.reason = event.error
    elif isinstance(event, RunStarted):
        raise ValueError(f"run {state.run_id} has a second RunStarted event")
    else:
        assert_never(event)
    return state


def _model_responded(state: RunState, event: ModelResponded) -> None:
    state.step = event.step
    state.usage = state.usage + event.usage
    if state.cost_usd is not None:
        state.cost_usd = None if event.cost_usd is None else state.cost_usd + event.cost_usd
    calls = event.message.tool_calls
    if calls:
        state.turn_index = len(state.messages)
        state.turn_successes = 0
        state.call_keys = {}
        for call in calls:
            key = (call.name, canonical_arguments(call.arguments))
            state.call_counts[key] = state.call_counts.get(key, 0) + 1
            state.call_keys[call.id] = key
    state.messages.append(event.message)
    state.awaiting = {call.id: call for call in calls}
    state.decisions = {}
    state.final_text = None if calls else (event.message.content or "")


def _tool_call_finished(state: RunState, event: ToolCallFinished) -> None:
    state.started.pop(event.call.id, None)
    state.awaiting.pop(event.call.id, None)
    state.tool_calls += 1
    if event.error is None:
        state.turn_successes += 1
    if not state.awaiting:  # the turn's last result: did any call of it succeed?
        progress = state.turn_successes > 0
        state.turns_without_progress = 0 if progress else state.turns_without_progress + 1
    state.messages.append(
        ToolResultMessage(
            tool_call_id=event.call.id,
            name=event.call.name,
            content=event.result,
            is_error=event.error is not None,
        )
    )


def _call_decided(state: RunState, event: CallDecided) -> None:
    state.decisions[event.call_id] = event
    state.pending.pop(event.call_id, None)
    if event.decision != "edit" or event.arguments is None:
        return
    # The model's call is rewritten with the person's arguments, so that the conversation
    # shows the call that actually ran next to its result.
    call = state.awaiting.get(event.call_id)
    turn = state.messages[state.turn_index] if state.turn_index >= 0 else None
    if call is None or not isinstance(turn, AssistantMessage):
        return
    edited = replace(call, arguments=event.arguments)
    state.awaiting[call.id] = edited
    state.messages[state.turn_index] = replace(
        turn, tool_calls=tuple(edited if c.id == call.id else c for c in turn.tool_calls)
    )


def fold(events: Iterable[Event], history: Sequence[Message] = ()) -> RunState:
    """Rebuild a run's state from its events (the first must be ``RunStarted``)."""
    iterator = iter(events)
    first = next(iterator, None)
    if not isinstance(first, RunStarted):
        raise ValueError("a run's journal must begin with a RunStarted event")
    state = start(first, history)
    for event in iterator:
        apply(state, event)
    return state

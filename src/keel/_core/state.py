"""A run's state: everything known about it, derived from its events.

:mod:`keel._core.fold` builds it (``fold(events, history)``) and advances it (``apply``): each
event kind says how it changes the state (its ``fold`` method). The state is updated in place:
a run's message list is appended to, never copied, so the cost of a step does not grow with the
length of the run. Callers that need an unchanged copy fold again from the journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic_core import from_json, to_json

from keel._core.eventbase import OPEN, ErrorInfo, RunStatus
from keel._core.limits import Limits
from keel._core.messages import Message, ToolCall
from keel._core.usage import Usage

if TYPE_CHECKING:
    from keel._core.events_checks import ChecksDecided
    from keel._core.events_tools import CallDecided, PendingCall, ToolCallStarted

__all__ = [
    "CORRECTION_PREFIX",
    "RunState",
    "canonical_arguments",
    "correction_message",
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
    #: The names of the models the run uses, in fallback order, as recorded at its start (or
    #: its latest resume with another model); empty for model objects that have no name to
    #: resolve again.
    models: tuple[str, ...] = ()
    #: The tools the run may use, by name, as journaled at its start (or its latest handoff).
    tools: tuple[str, ...] = ()
    #: Whether ``messages`` begins with the agent's instructions.
    instructed: bool = False
    #: Who the run is for (``Runtime.run(tenant=..., user=..., roles=...)``).
    tenant: str | None = None
    user: str | None = None
    roles: tuple[str, ...] = ()
    #: The trace the run continues (see ``RunStarted.trace_context``).
    trace_context: dict[str, str] | None = None
    messages: list[Message] = field(default_factory=list)
    history_count: int = 0
    #: Index in ``messages`` of this run's own first message (its user input).
    first_own_message: int = 0
    step: int = 0
    tool_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0
    #: What the latest model call (of turn ``step``) cost; ``None``: unknown, or no call yet.
    last_call_cost: float | None = None
    #: Every tool call this run started, in order (once each, whatever its attempts).
    started_calls: list[ToolCall] = field(default_factory=list)
    #: The ids of every tool call the model made in this run (they are kept distinct).
    call_ids: set[str] = field(default_factory=set)
    #: Tool calls of the latest model turn that have no result yet, in the model's order.
    awaiting: dict[str, ToolCall] = field(default_factory=dict)
    #: Calls journaled as started whose result is not journaled (the latest attempt of each).
    started: dict[str, ToolCallStarted] = field(default_factory=dict)
    #: Started calls whose effect is in doubt (a timeout, a cancel): why, by call id.
    in_doubt: dict[str, ErrorInfo] = field(default_factory=dict)
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
    #: For a child run: the run whose tool call started it (see ``RunStarted.parent_run_id``).
    parent_run_id: str | None = None
    #: Index in ``messages`` of the latest assistant turn that made tool calls, and the place
    #: of each of its calls in it (results are kept in that order).
    turn_index: int = -1
    positions: dict[str, int] = field(default_factory=dict)
    #: What waits for a person (by call or subject id), and the decisions made on them. A
    #: decision covers one attempt: the next start of the call uses it up.
    pending: dict[str, PendingCall] = field(default_factory=dict)
    #: When the run last asked people to decide (the latest ``ApprovalRequested``).
    pending_since: float = 0.0
    #: When the run last entered the queue (accepted queued, or queued again); 0 if never.
    queued_since: float = 0.0
    #: How long the run waited in the queue before the latest claim (a dequeue, or a resume
    #: of a queued run); ``None`` when the latest start of driving was not from the queue.
    queue_wait_s: float | None = None
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
    #: Calls of the latest turn that ran (were started): their results are tool output.
    ran: set[str] = field(default_factory=set)
    #: The outcome of the checks at each point, by (point, subject).
    checks: dict[tuple[str, str], ChecksDecided] = field(default_factory=dict)
    #: Tool results a check held back until a person decides, by subject id.
    withheld: dict[str, str] = field(default_factory=dict)
    #: Set when the run was cancelled while a call's effect was in doubt: once a person has
    #: said what happened, the run ends as cancelled.
    cancelling: ErrorInfo | None = None

    @property
    def own_messages(self) -> list[Message]:
        """The messages this run added to its thread (input onwards, no instructions)."""
        return self.messages[self.first_own_message :]

    @property
    def holds_thread(self) -> bool:
        """Whether the run keeps its thread busy: it has not ended, it adds to the thread when
        it completes (a fork does not), and it is not being cancelled."""
        return self.status in OPEN and self.forked_from is None and self.cancelling is None


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

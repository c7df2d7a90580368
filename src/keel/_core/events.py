"""The journal's event types.

A run is an append-only sequence of these events; its state is a fold over them
(:mod:`keel._core.state`). Each event type carries a ``type`` tag and a schema version ``v``.
Adding a field with a default is backwards compatible; anything else bumps ``v`` and adds an
upgrade in :mod:`keel._core.codec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from keel._core.limits import Limits
from keel._core.messages import AssistantMessage, Attempt, ToolCall
from keel._core.usage import Usage

__all__ = [
    "ApprovalRequested",
    "CallDecided",
    "Decision",
    "ErrorInfo",
    "Event",
    "ModelFailed",
    "ModelResponded",
    "ModelSwitched",
    "OutputRejected",
    "PendingCall",
    "RunFinished",
    "RunPaused",
    "RunResumed",
    "RunStarted",
    "RunStatus",
    "ToolCallFinished",
    "ToolCallStarted",
]

RunStatus = Literal["running", "completed", "failed", "paused", "awaiting_approval", "cancelled"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """Why something failed: a stable code and a readable message."""

    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted:
    """A run began. ``history_count`` thread messages preceded its input."""

    run_id: str
    thread_id: str
    agent: str
    model: str
    input: str
    instructions: str = ""
    history_count: int = 0
    tools: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    output_schema: dict[str, Any] | None = None
    #: Where the agent is defined (``path.py:attr`` or ``module:attr``), so that another
    #: process (``keel resume``) can load it; ``None`` when unknown.
    agent_ref: str | None = None
    #: The thread's last message sequence number when the run started: its history is the
    #: thread's messages up to here. ``None`` in journals written before it existed.
    history_seq: int | None = None
    #: For a fork: the run it was copied from and the last step it copied.
    forked_from: str | None = None
    fork_step: int | None = None
    at: float = 0.0
    type: Literal["run_started"] = "run_started"
    v: Literal[1] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResponded:
    """A model answered step ``step``."""

    step: int
    model: str
    message: AssistantMessage
    usage: Usage
    cost_usd: float | None = None
    latency_ms: float = 0.0
    finish_reason: str | None = None
    #: Every try it took (retries, fallbacks), when resilience wrappers were in play.
    attempts: tuple[Attempt, ...] = ()
    #: Answered from the response cache: nothing was sent, nothing was paid.
    cached: bool = False
    #: The routing rule that chose the model, when a router did.
    route: str | None = None
    at: float = 0.0
    type: Literal["model_responded"] = "model_responded"
    v: Literal[1] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFailed:
    """A model call for step ``step`` failed."""

    step: int
    model: str
    error: ErrorInfo
    retryable: bool = False
    status: int | None = None
    latency_ms: float = 0.0
    attempts: tuple[Attempt, ...] = ()
    at: float = 0.0
    type: Literal["model_failed"] = "model_failed"
    v: Literal[1] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallStarted:
    """A validated tool call is about to run. Journaled before the tool is called."""

    step: int
    call: ToolCall
    idempotency_key: str
    at: float = 0.0
    type: Literal["tool_call_started"] = "tool_call_started"
    v: Literal[1] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallFinished:
    """A tool call ended. ``result`` is what the model sees; ``error`` is set when it failed.

    A call rejected before running (unknown tool, malformed or invalid arguments) has a
    ``ToolCallFinished`` with an error and no ``ToolCallStarted``.
    """

    step: int
    call: ToolCall
    result: str
    error: ErrorInfo | None = None
    latency_ms: float = 0.0
    #: How many tries it took (tools with retries).
    attempts: int = 1
    at: float = 0.0
    type: Literal["tool_call_finished"] = "tool_call_finished"
    v: Literal[1] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputRejected:
    """The model's final answer failed ``output_type`` validation and was sent back."""

    step: int
    error: str
    at: float = 0.0
    type: Literal["output_rejected"] = "output_rejected"
    v: Literal[1] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingCall:
    """A tool call waiting for a person: one that needs approval, or one that was interrupted
    and is not safe to repeat (did its effect happen?)."""

    call: ToolCall
    kind: Literal["approval", "interrupted"]
    idempotency_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequested:
    """The run stopped before these calls until a person decides on each of them."""

    step: int
    calls: tuple[PendingCall, ...]
    at: float = 0.0
    type: Literal["approval_requested"] = "approval_requested"
    v: Literal[1] = 1


Decision = Literal["approve", "reject", "edit", "done"]
"""``approve``: run the call (again, for an interrupted one); ``edit``: run it with new
arguments; ``reject``: do not run it, the model is told why; ``done``: an interrupted call's
effect did happen, and ``result`` is what it returned."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallDecided:
    """A person decided on a pending call. Who decided and when is kept with the decision."""

    call_id: str
    decision: Decision
    by: str
    reason: str | None = None
    arguments: str | None = None
    result: str | None = None
    at: float = 0.0
    type: Literal["call_decided"] = "call_decided"
    v: Literal[1] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSwitched:
    """The run moves on to the next model of its fallback chain (``model_index`` counts from
    0), because the current one kept producing invalid answers."""

    step: int
    model_index: int
    reason: ErrorInfo
    #: What the next model is told about the last invalid answer (``None``: nothing to say).
    correction: str | None = None
    at: float = 0.0
    type: Literal["model_switched"] = "model_switched"
    v: Literal[1] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPaused:
    """The run stopped before finishing and can be resumed (e.g. a limit was reached)."""

    reason: ErrorInfo
    at: float = 0.0
    type: Literal["run_paused"] = "run_paused"
    v: Literal[1] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResumed:
    """A paused or interrupted run continues, possibly with new limits."""

    limits: Limits
    at: float = 0.0
    type: Literal["run_resumed"] = "run_resumed"
    v: Literal[1] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished:
    """The run ended for good. ``output`` is the final answer as JSON-compatible data."""

    status: Literal["completed", "failed", "cancelled"]
    output: Any = None
    error: ErrorInfo | None = None
    at: float = 0.0
    type: Literal["run_finished"] = "run_finished"
    v: Literal[1] = 1


Event = Annotated[
    RunStarted
    | ModelResponded
    | ModelFailed
    | ToolCallStarted
    | ToolCallFinished
    | OutputRejected
    | ApprovalRequested
    | CallDecided
    | ModelSwitched
    | RunPaused
    | RunResumed
    | RunFinished,
    Field(discriminator="type"),
]

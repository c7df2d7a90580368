"""Events of a run's life: started, queued, dequeued, paused, resumed, cancelled, finished."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from keel._core.eventbase import ErrorInfo, Event, event_kind
from keel._core.limits import Limits

if TYPE_CHECKING:
    from keel._core.state import RunState

__all__ = [
    "CancelRequested",
    "RunDequeued",
    "RunFinished",
    "RunPaused",
    "RunQueued",
    "RunResumed",
    "RunStarted",
]


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """A run began (or, with ``queued``, was accepted and waits for a driver).

    Its history is the thread's messages up to ``history_seq``, from index ``history_from``
    on (earlier ones are left out by the agent's history budget, and summed up in
    ``history_summary`` when the agent summarizes). A queued run reads its history when it
    leaves the queue, and records it in :class:`RunDequeued` instead.
    """

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
    #: Where the agent is defined, for information only: the journal never decides what code
    #: runs (agents come from what the operator names).
    agent_ref: str | None = None
    #: The thread's last message sequence number when the run started: its history is the
    #: thread's messages up to here. ``None`` in journals written before it existed, and for a
    #: queued run (see :class:`RunDequeued`).
    history_seq: int | None = None
    #: For a fork: the run it was copied from and the last step it copied.
    forked_from: str | None = None
    fork_step: int | None = None
    #: Accepted into the queue rather than started by its caller.
    queued: bool = False
    #: The names of the models the run uses, in fallback order (empty: model objects).
    models: tuple[str, ...] = ()
    history_from: int = 0
    history_summary: str | None = None
    #: Who the run is for: policies, budgets and the audit log read these.
    tenant: str | None = None
    user: str | None = None
    roles: tuple[str, ...] = ()
    #: The W3C trace context (``traceparent``, ``tracestate``) of whoever started or submitted
    #: the run while being traced: the run's spans continue that trace, in any process.
    trace_context: dict[str, str] | None = None
    #: For a child run (started by a tool call of another run, see
    #: :mod:`keel._core.delegation`): the parent run, the step and the call that started it.
    parent_run_id: str | None = None
    parent_step: int | None = None
    parent_call_id: str | None = None
    type: Literal["run_started"] = "run_started"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        raise ValueError(f"run {state.run_id} has a second RunStarted event")


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class RunDequeued(Event):
    """A queued run left the queue: a driver began it, with the thread's messages up to
    ``history_seq`` (from index ``history_from``) as its history."""

    history_seq: int
    history_count: int = 0
    history_from: int = 0
    history_summary: str | None = None
    type: Literal["run_dequeued"] = "run_dequeued"
    v: Literal[1] = 1
    external: ClassVar[bool] = True

    def fold(self, state: RunState) -> None:
        _claimed(state, self.at)
        state.status = "running"
        state.history_seq = self.history_seq
        state.history_count = self.history_count
        state.active_since = self.at


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class RunQueued(Event):
    """A run goes back to the queue (a person decided, a limit was raised): any driver may
    continue it. ``limits`` and ``models`` replace the run's when given."""

    reason: str
    limits: Limits | None = None
    models: tuple[str, ...] | None = None
    type: Literal["run_queued"] = "run_queued"
    v: Literal[1] = 1
    external: ClassVar[bool] = True

    def fold(self, state: RunState) -> None:
        state.status = "queued"
        state.queued_since = self.at
        state.pending = {}
        state.reason = None
        if self.limits is not None:
            state.limits = self.limits
        if self.models is not None:
            _switch_models(state, self.models)
        _forget_refusals(state)


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class RunPaused(Event):
    """The run stopped before finishing and can be resumed (e.g. a limit was reached)."""

    reason: ErrorInfo
    type: Literal["run_paused"] = "run_paused"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        state.status = "paused"
        state.reason = self.reason


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class RunResumed(Event):
    """A driver continues the run (after a pause, a crash or the queue), possibly with new
    limits or other models. ``taken_over``: the run was still running, so its last driver
    died or lost its lease, and this one took it over."""

    limits: Limits
    models: tuple[str, ...] | None = None
    taken_over: bool = False
    type: Literal["run_resumed"] = "run_resumed"
    v: Literal[1] = 1
    external: ClassVar[bool] = True

    def fold(self, state: RunState) -> None:
        _claimed(state, self.at)
        state.status = "running"
        state.pending = {}
        state.limits = self.limits
        state.reason = None
        state.active_since = self.at
        if self.models is not None:
            _switch_models(state, self.models)
        _forget_refusals(state)


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequested(Event):
    """The run was cancelled while calls whose effect is in doubt were under way: once a
    person has said what became of them, it ends as cancelled."""

    reason: ErrorInfo
    type: Literal["cancel_requested"] = "cancel_requested"
    v: Literal[1] = 1
    external: ClassVar[bool] = True

    def fold(self, state: RunState) -> None:
        state.cancelling = self.reason


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    """The run ended for good. ``output`` is the final answer as JSON-compatible data."""

    status: Literal["completed", "failed", "cancelled"]
    output: Any = None
    error: ErrorInfo | None = None
    type: Literal["run_finished"] = "run_finished"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        state.status = self.status
        state.output = self.output
        state.reason = self.error


def chain_name(models: tuple[str, ...]) -> str:
    """The name a chain of models goes by: the model's own, or ``fallback(a,b,...)``."""
    return models[0] if len(models) == 1 else f"fallback({','.join(models)})"


def _switch_models(state: RunState, models: tuple[str, ...]) -> None:
    state.models = models
    state.model_index = 0
    if models:
        state.model = chain_name(models)


def _forget_refusals(state: RunState) -> None:
    """A resumed run asks its model-call checks again: what refused before may allow now."""
    for key in [k for k, v in state.checks.items() if k[0] == "model_call"]:
        if state.checks[key].verdict in ("deny", "escalate"):
            del state.checks[key]


def _claimed(state: RunState, at: float) -> None:
    """A driver takes the run: how long it waited in the queue, if it was queued."""
    queued = state.status == "queued" and state.queued_since > 0
    state.queue_wait_s = max(0.0, at - state.queued_since) if queued else None

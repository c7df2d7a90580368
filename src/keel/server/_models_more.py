"""The JSON bodies of decisions, feedback, threads, agents and health."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from keel.server._models_runs import (
    CALL_ID_PATTERN,
    PendingCallView,
    RunSummary,
    Text,
)

__all__ = [
    "AgentList",
    "AgentView",
    "ApprovalList",
    "ApprovalView",
    "Approve",
    "CallId",
    "Cancel",
    "Deleted",
    "Edit",
    "FeedbackList",
    "FeedbackView",
    "GiveFeedback",
    "HealthCheckView",
    "HealthView",
    "Person",
    "ProbeView",
    "Reason",
    "Reject",
    "ThreadList",
    "ThreadSummary",
    "ThreadView",
]

_STRICT = ConfigDict(extra="forbid")
CallId = Annotated[str, StringConstraints(pattern=CALL_ID_PATTERN)]
Person = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Reason = Annotated[Text, StringConstraints(min_length=1, max_length=10_000)]


class Approve(BaseModel):
    """Approve a pending call. ``call_id`` may be left out when one call is pending."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})

    call_id: CallId | None = None
    by: Person | None = Field(
        default=None,
        description="Who decides; with an API key it is the key's user and cannot be given.",
    )


class Edit(BaseModel):
    """Approve a pending call with other arguments (checked against the tool's schema)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"arguments": {"amount_usd": 50}}]}
    )

    call_id: CallId | None = None
    arguments: dict[str, Any]
    by: Person | None = None


class Reject(BaseModel):
    """Refuse a pending call; the model is told who refused it and why."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "over the refund limit"}]}
    )

    call_id: CallId | None = None
    reason: Reason
    by: Person | None = None


class Cancel(BaseModel):
    """End a run for good."""

    model_config = _STRICT

    reason: Reason | None = None


class ApprovalView(BaseModel):
    """A run waiting for people's decisions, and what waits."""

    run_id: str
    thread: str
    agent: str
    user: str | None = None
    created_at: float
    pending: list[PendingCallView]


class ApprovalList(BaseModel):
    """Every run of the caller's tenant that waits for a decision, oldest first."""

    approvals: list[ApprovalView]


class GiveFeedback(BaseModel):
    """What someone thought of a run, or of one of its steps."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"score": 1, "label": "golden"}]},
    )

    step: int | None = Field(default=None, ge=1, le=1_000_000)
    score: float | None = Field(
        default=None, ge=-1, le=5, description="-1 or 1 for thumbs (0 neutral), 1 to 5 a rating."
    )
    label: Annotated[Text, StringConstraints(min_length=1, max_length=200)] | None = None
    comment: Annotated[Text, StringConstraints(max_length=10_000)] | None = None


class FeedbackView(BaseModel):
    """Recorded feedback."""

    id: str
    run_id: str
    step: int | None = None
    score: float | None = None
    label: str | None = None
    comment: str | None = None
    by: str | None = None
    at: float


class FeedbackList(BaseModel):
    """A run's feedback, oldest first."""

    feedback: list[FeedbackView]


class ThreadSummary(BaseModel):
    """A thread, by its newest run."""

    thread: str
    latest_run: RunSummary


class ThreadList(BaseModel):
    """The caller's threads, most recently started first."""

    threads: list[ThreadSummary]
    next_cursor: str | None = None


class ThreadView(BaseModel):
    """A thread's runs, newest first, and the run that holds it now (if one does)."""

    thread: str
    active_run_id: str | None = None
    runs: list[RunSummary]
    next_cursor: str | None = None


class Deleted(BaseModel):
    """What a deletion removed."""

    deleted_runs: int


class AgentView(BaseModel):
    """An agent this server runs."""

    name: str
    tools: list[str]


class AgentList(BaseModel):
    """The agents this server runs."""

    agents: list[AgentView]


class HealthCheckView(BaseModel):
    """One thing checked."""

    name: str
    ok: bool
    why: str


class ProbeView(BaseModel):
    """One semantic probe's outcome."""

    agent: str
    name: str
    passed: bool
    answer: str | None = None
    latency_s: float
    why: str


class HealthView(BaseModel):
    """A health report: ``ok`` when every check and probe is."""

    ok: bool
    checks: list[HealthCheckView] = Field(default_factory=list)
    probes: list[ProbeView] = Field(default_factory=list)

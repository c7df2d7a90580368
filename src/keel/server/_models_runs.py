"""The JSON bodies of the runs endpoints: what clients send and what they get back.

Every string a client sends is checked here, before the runtime sees it: names are short and
printable, text holds no NUL character and is valid Unicode (PostgreSQL refuses NUL, and a
lone surrogate cannot be stored), and unknown fields are refused, so a typo such as
``"treads"`` is an error naming it instead of being ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "THREAD_PATTERN",
    "CreateRun",
    "ErrorBody",
    "ErrorDetail",
    "EventList",
    "EventView",
    "Name",
    "PendingCallView",
    "ReasonView",
    "RunLimits",
    "RunList",
    "RunSummary",
    "RunView",
    "StepList",
    "StepView",
    "Text",
    "ThreadName",
    "UsageView",
]

# What a path segment or a short name may be: printable ASCII words, no slash or space.
THREAD_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}$"
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
CALL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"


def _storable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it holds a lone surrogate)") from None
    return text


# Patterns, not validators, so that the OpenAPI document says what is accepted. "Blank" is
# what Python's str.strip() removes: the regex's \s and the separators \x1c-\x1f.
_NO_NUL = r"^[^\x00]*$"
_NOT_BLANK = r"^[^\x00]*[^\s\x00\x1c-\x1f][^\x00]*$"

Text = Annotated[str, StringConstraints(pattern=_NO_NUL), AfterValidator(_storable)]
"""Free text that a store can keep (no NUL character, valid Unicode)."""
Message = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200_000, pattern=_NOT_BLANK),
    AfterValidator(_storable),
]
"""A user's message: text with something in it besides whitespace."""
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""An agent's, a tool's or a reason code's name."""
ThreadName = Annotated[str, StringConstraints(pattern=THREAD_PATTERN)]
"""A thread's name as clients give it (a tenant's threads are its own)."""

_STRICT = ConfigDict(extra="forbid")


class RunLimits(BaseModel):
    """Tighter limits for one run; each is at most the agent's own (a request can lower a
    limit, never raise it)."""

    model_config = _STRICT

    max_steps: int | None = Field(default=None, ge=1, le=10_000)
    max_tool_calls: int | None = Field(default=None, ge=1, le=100_000)
    max_total_tokens: int | None = Field(default=None, ge=1, le=1_000_000_000)
    max_cost_usd: float | None = Field(default=None, ge=0, le=1_000_000, allow_inf_nan=False)


class CreateRun(BaseModel):
    """A new run: an agent, the user's message, and how to wait for it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"agent": "support", "input": "Where is order 1042?", "thread": "customer-42"},
                {"agent": "support", "input": "Refund order 1043", "background": True},
            ]
        },
    )

    agent: Name = Field(description="The agent to run (GET /v1/agents lists them).")
    input: Message = Field(description="The user's message (not only whitespace).")
    thread: ThreadName | None = Field(
        default=None,
        description="Continue this conversation; without it the run gets a thread of its own.",
    )
    if_busy: Literal["queue", "reject", "interrupt"] = Field(
        default="queue",
        description="When an earlier run of the thread has not ended: wait behind it "
        "(queue), answer 409 (reject), or cancel it (interrupt).",
    )
    background: bool = Field(
        default=False,
        description="Answer 202 with the run's id as soon as it is durable, without waiting.",
    )
    wait: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Seconds to wait for the run to stop (default: the server's wait_s); "
        "still running then: 202 and a Location to poll.",
    )
    deadline_s: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="Seconds the run may take from its start; past it, it pauses "
        "(reason limit.max_wall_time_s).",
    )
    limits: RunLimits | None = None


class ReasonView(BaseModel):
    """Why a run did not complete: a stable code and a sentence."""

    code: str
    message: str


class PendingCallView(BaseModel):
    """A call waiting for a person's decision."""

    call_id: str
    tool: str
    arguments: str = Field(description="The call's arguments, as JSON text.")
    kind: Literal["approval", "interrupted", "escalated"]
    reason: str | None = None


class UsageView(BaseModel):
    """Tokens the run's model calls used."""

    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int


class RunView(BaseModel):
    """Where a run stands, with its answer once it completed."""

    run_id: str
    thread: str
    agent: str
    model: str
    status: Literal[
        "queued", "running", "completed", "failed", "paused", "awaiting_approval", "cancelled"
    ]
    output: Any = Field(default=None, description="The answer of a completed run.")
    reason: ReasonView | None = None
    pending: list[PendingCallView] = Field(default_factory=list)
    usage: UsageView
    cost_usd: float | None = None
    steps: int
    tool_calls: int
    user: str | None = None
    created_at: float
    updated_at: float


class RunSummary(BaseModel):
    """A run in a listing."""

    run_id: str
    thread: str
    agent: str
    model: str
    status: str
    input: str
    output_preview: str | None = None
    steps: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = None
    reason_code: str | None = None
    reason: str | None = None
    tools: list[str]
    user: str | None = None
    created_at: float
    updated_at: float


class RunList(BaseModel):
    """A page of runs, newest first; ``next_cursor`` fetches the next page."""

    runs: list[RunSummary]
    next_cursor: str | None = None


class EventView(BaseModel):
    """One journal event: its place in the journal (``seq``), its kind, and its fields."""

    seq: int
    type: str
    event: dict[str, Any]


class EventList(BaseModel):
    """A run's events after a sequence number; ``last_seq`` is where to go on from."""

    events: list[EventView]
    last_seq: int


class StepView(BaseModel):
    """One model turn: what the model said, the tools it called, what it cost."""

    step: int
    text: str | None = None
    actions: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    error: str | None = None
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = None


class StepList(BaseModel):
    """A run's steps."""

    steps: list[StepView]


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description="Stable: clients may branch on it.")
    message: str = Field(description="What was wrong and how to fix it.")
    field: str | None = Field(default=None, description="The part of the request at fault.")
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    """Every error answer."""

    error: ErrorDetail

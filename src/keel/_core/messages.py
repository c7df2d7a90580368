"""Provider-neutral messages, tool definitions and model requests/responses.

These are frozen, slotted dataclasses rather than pydantic models: they sit on the hot path of
every step and are never revalidated once built. Serialization goes through pydantic
``TypeAdapter`` objects (see :mod:`keel._core.codec`), which handle dataclasses natively.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from keel._core.usage import Usage

__all__ = [
    "AssistantMessage",
    "Attempt",
    "Message",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "StreamComplete",
    "StreamEvent",
    "SystemMessage",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "ToolResultMessage",
    "UserMessage",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """A tool call proposed by a model.

    ``arguments`` is the raw JSON text the model produced: it may be malformed, and is only
    parsed and validated against the tool's schema by the runtime, never trusted.
    """

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemMessage:
    """Instructions from the agent's author."""

    content: str
    role: Literal["system"] = "system"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserMessage:
    """Input from the user (or a corrective note from the runtime)."""

    content: str
    role: Literal["user"] = "user"


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantMessage:
    """A model's turn: text, tool calls, or both."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = "assistant"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResultMessage:
    """The result (or error) of one tool call, as the model will see it."""

    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    role: Literal["tool"] = "tool"


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolResultMessage,
    Field(discriminator="role"),
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolDefinition:
    """What a model is told about a tool: its name, description and JSON schema."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSettings:
    """Sampling parameters. ``None`` leaves the provider's default in place."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None
    parallel_tool_calls: bool | None = None
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRequest:
    """Everything a model needs to produce its next turn."""

    messages: Sequence[Message]
    tools: Sequence[ToolDefinition] = ()
    output_schema: Mapping[str, Any] | None = None
    output_name: str = "output"
    settings: ModelSettings = field(default_factory=ModelSettings)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try at a model call, as resilience wrappers report it.

    ``model`` is the full name of the model tried; ``code`` and ``message`` say why it failed
    (``None`` for the attempt that answered); ``skipped`` means it was not sent at all (its
    circuit breaker was open); ``waited_ms`` is the backoff slept before it.
    """

    model: str
    code: str | None = None
    message: str | None = None
    latency_ms: float = 0.0
    waited_ms: float = 0.0
    skipped: bool = False

    @property
    def ok(self) -> bool:
        """Whether this attempt answered."""
        return self.code is None and not self.skipped


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResponse:
    """A model's reply: the assistant message, what it cost in tokens, and why it stopped.

    Resilience wrappers fill in the rest: ``served_by`` is the full name of the model that
    actually answered (a fallback may), ``attempts`` every try it took (failed ones first),
    ``cached`` marks an answer from the response cache, and ``route`` the routing rule that
    chose the model.
    """

    message: AssistantMessage
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None
    provider_response_id: str | None = None
    served_by: str = ""
    attempts: tuple[Attempt, ...] = ()
    cached: bool = False
    route: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta:
    """A piece of streamed text."""

    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallDelta:
    """A piece of a streamed tool call; ``index`` groups the pieces of one call."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    kind: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamComplete:
    """The last stream event: the whole response, assembled."""

    response: ModelResponse
    kind: Literal["complete"] = "complete"


StreamEvent = TextDelta | ToolCallDelta | StreamComplete

"""The wire shapes of the OpenAI-compatible endpoint: requests, completions, chunks, models
and errors, as the OpenAI Chat Completions API defines them.

The request is parsed leniently where OpenAI clients vary (a message's content is checked by
:mod:`keel.server._openai_conversation`, which names the part at fault) and strictly at the
top: an unknown parameter is refused, as OpenAI refuses it, rather than silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, field_serializer

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "CompletionUsage",
    "Delta",
    "ErrorBody",
    "ErrorResponse",
    "ModelList",
    "ModelObject",
    "OutputMessage",
    "StreamOptions",
    "UnicodeText",
    "valid_unicode",
]


def valid_unicode(value: str) -> str:
    """``value``, if it can be encoded: JSON may escape half a surrogate pair (``\\ud800``),
    which no response, journal or model could carry."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("it is not valid Unicode text (it holds a lone surrogate)") from None
    return value


UnicodeText = Annotated[str, AfterValidator(valid_unicode)]
"""A string that can be encoded as UTF-8."""


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the run's token usage."""

    model_config = ConfigDict(extra="forbid")

    include_usage: bool | None = None
    #: Accepted and ignored: chunks carry no obfuscation padding.
    include_obfuscation: bool | None = None


_TEXT_PART: dict[str, JsonValue] = {
    "type": "object",
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    "required": ["type", "text"],
}


class ChatMessage(BaseModel):
    """One message of the conversation the client sends. ``content`` is a string or a list
    of ``{"type": "text", "text": ...}`` parts; tool calls and tool results are refused,
    since the agent's tools run on the server."""

    # Clients add bookkeeping keys of their own to messages (ids, timestamps): ignored.
    model_config = ConfigDict(extra="ignore")

    # Checked by the endpoint, which names what is wrong (a tool result, an image part); the
    # schema says what is accepted.
    role: UnicodeText = Field(
        json_schema_extra={"enum": ["system", "developer", "user", "assistant"]}
    )
    content: Any = Field(
        default=None,
        json_schema_extra={
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": _TEXT_PART},
                {"type": "null"},
            ]
        },
    )
    name: UnicodeText | None = None
    tool_calls: Any = None
    tool_call_id: Any = None
    function_call: Any = None
    refusal: Any = None
    audio: Any = None


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``.

    ``model`` names an agent. ``thread`` (a Keel extension, ``extra_body={"thread": ...}``
    with the openai package) continues that conversation of the caller's. The parameters
    that shape sampling are accepted and ignored: the agent's own model settings apply.
    """

    model_config = ConfigDict(extra="forbid")

    model: UnicodeText = Field(min_length=1)
    messages: list[ChatMessage]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    thread: UnicodeText | None = None

    # Refused unless left at what one agent answer gives (see the endpoint's checks).
    n: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0)
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    audio: Any = None
    modalities: list[str] | None = None
    prediction: Any = None
    web_search_options: Any = None

    # Accepted and ignored: the agent's model settings decide.
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None
    logit_bias: dict[str, float] | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    service_tier: str | None = None
    # Accepted and ignored: who the run is for comes from the server's authentication, and
    # the journal keeps every run.
    user: str | None = None
    safety_identifier: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    moderation: Any = None


class CompletionUsage(BaseModel):
    """Tokens the run used, over all of its model calls."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int] = Field(default_factory=dict)
    completion_tokens_details: dict[str, int] = Field(default_factory=dict)


class OutputMessage(BaseModel):
    """The agent's answer."""

    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    """The one choice of a completion: a run gives one answer."""

    index: int = 0
    message: OutputMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    """A completed run as a chat completion; ``id`` is ``chatcmpl-`` and the run id."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: None = None


class Delta(BaseModel):
    """What a chunk adds to the answer: the role (first chunk), then pieces of text."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """The one choice of a chunk."""

    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None
    logprobs: None = None

    @field_serializer("delta")
    def _only_what_is_added(self, delta: Delta) -> dict[str, str]:
        # A delta names only what it adds ({"content": "lo "}), as OpenAI's chunks do.
        return delta.model_dump(exclude_none=True)


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: None = None


class ModelObject(BaseModel):
    """An agent, listed as a model: its name is the ``model`` a request names."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "keel"


class ModelList(BaseModel):
    """``GET /v1/models``: every agent the endpoint serves."""

    object: Literal["list"] = "list"
    data: list[ModelObject]


class ErrorBody(BaseModel):
    """What went wrong: ``param`` names the request field at fault, when one is."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error of the endpoint, in OpenAI's shape."""

    error: ErrorBody

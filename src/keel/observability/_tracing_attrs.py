"""What Keel's spans say: the GenAI semantic conventions' names, Keel's own, model names,
message content as the conventions' JSON, and the ids a run's trace is known by everywhere.

The names are the OpenTelemetry GenAI semantic conventions' (``gen_ai.*``), spelled out here
rather than imported: the incubating module that holds them warns on import, and they are part
of what Keel promises its users (docs/guide/tracing.md lists them). Nothing here imports
OpenTelemetry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

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
    "AGENT_NAME",
    "CONVERSATION_ID",
    "ERROR_TYPE",
    "FINISH_REASONS",
    "INPUT_MESSAGES",
    "INPUT_TOKENS",
    "OPERATION",
    "OUTPUT_MESSAGES",
    "OUTPUT_TOKENS",
    "PROVIDER",
    "REQUEST_MODEL",
    "RESPONSE_MODEL",
    "SYSTEM_INSTRUCTIONS",
    "TOOL_ARGUMENTS",
    "TOOL_CALL_ID",
    "TOOL_NAME",
    "TOOL_RESULT",
    "TOOL_TYPE",
    "derived_id",
    "input_json",
    "instructions_json",
    "model_parts",
    "output_json",
    "text_json",
    "usage_attributes",
    "value_text",
]

# -- the GenAI semantic conventions -------------------------------------------------------------
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION_ID = "gen_ai.conversation.id"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
# Content: recorded only with Tracing(capture_content=True).
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
ERROR_TYPE = "error.type"
HTTP_STATUS = "http.response.status_code"


def model_parts(name: str) -> tuple[str, str]:
    """The provider and the model of a Keel model name: ``openai:gpt-4o-mini`` gives
    ``("openai", "gpt-4o-mini")``; a name without a provider (a test double, ``rules``, a
    wrapper of your own) is its own provider."""
    provider, colon, model = name.partition(":")
    if not colon or not model:
        return name, name
    return provider, model


def usage_attributes(usage: Usage) -> dict[str, int]:
    """The token counts of ``usage`` (the optional ones only when reported)."""
    found = {INPUT_TOKENS: usage.input_tokens, OUTPUT_TOKENS: usage.output_tokens}
    if usage.cached_input_tokens:
        found[CACHE_READ_TOKENS] = usage.cached_input_tokens
    if usage.reasoning_tokens:
        found[REASONING_TOKENS] = usage.reasoning_tokens
    return found


def derived_id(run_id: str, what: str, bits: int) -> int:
    """An id that every process derives alike from a run's id (never 0, which is invalid)."""
    digest = hashlib.sha256(f"keel:{what}:{run_id}".encode()).digest()
    return int.from_bytes(digest[: bits // 8], "big") or 1


# -- content, as the conventions' JSON ------------------------------------------------------------


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments)
    except ValueError:
        return call.arguments


def _text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def _message(message: Message) -> dict[str, Any]:
    if isinstance(message, AssistantMessage):
        parts: list[dict[str, Any]] = [_text(message.content)] if message.content else []
        parts.extend(
            {"type": "tool_call", "id": c.id, "name": c.name, "arguments": _arguments(c)}
            for c in message.tool_calls
        )
        return {"role": "assistant", "parts": parts}
    if isinstance(message, ToolResultMessage):
        response = {"type": "tool_call_response", "id": message.tool_call_id}
        return {"role": "tool", "parts": [{**response, "response": message.content}]}
    if isinstance(message, SystemMessage | UserMessage):
        return {"role": message.role, "parts": [_text(message.content)]}
    return {"role": "unknown", "parts": []}  # pragma: no cover - every kind is handled above


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def input_json(messages: Iterable[Message]) -> str:
    """``gen_ai.input.messages``: what a model was sent."""
    return _dumps([_message(m) for m in messages])


def output_json(message: AssistantMessage, finish_reason: str | None) -> str:
    """``gen_ai.output.messages``: what a model answered."""
    found = _message(message)
    if finish_reason:
        found["finish_reason"] = finish_reason
    return _dumps([found])


def instructions_json(text: str) -> str:
    """``gen_ai.system_instructions``: the agent's instructions."""
    return _dumps([_text(text)])


def text_json(role: str, texts: Sequence[str]) -> str:
    """Plain texts as one message of ``role`` (a run's input or output)."""
    return _dumps([{"role": role, "parts": [_text(t) for t in texts]}])


def value_text(value: Any) -> str:
    """A run's output (JSON-compatible data) as text."""
    return value if isinstance(value, str) else _dumps(value)

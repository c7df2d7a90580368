"""An Anthropic Messages API server on 127.0.0.1 that answers from a script.

It speaks the real wire format: ``POST /v1/messages`` as JSON or as an SSE stream with the real
event sequence (``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
with ``text_delta``/``input_json_delta``, ``content_block_stop``, ``message_delta`` with usage and
``stop_reason``, ``message_stop``), ``GET /v1/models``, and Anthropic-shaped error bodies.
``base_url`` is the server root, as for :class:`keel.models._anthropic.AnthropicModel`::

    with AnthropicCompatibleServer(api_key="test-key") as server:
        server.add_reply("Hello!", usage=(12, 3))
        model = AnthropicModel("claude-test", base_url=server.base_url, api_key="test-key")

Scripted tool arguments that are not a JSON object are streamed as they are, and sent as a bare
string ``input`` in JSON answers (the real API never does that; it is there to test clients).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from keel._core.usage import Usage
from keel.testing._loopback import (
    Event,
    Fault,
    LoopbackServer,
    RecordedRequest,
    Reply,
    split_arguments,
    split_text,
)

__all__ = ["AnthropicCompatibleServer", "Fault", "RecordedRequest", "Reply"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _usage(usage: Usage, *, output_tokens: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens - usage.cached_input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens if output_tokens is None else output_tokens,
    }


def _input(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


class AnthropicCompatibleServer(LoopbackServer):
    """Serves ``/v1/messages`` and ``/v1/models``; ``base_url`` is the root URL.

    Requests need an ``anthropic-version`` header, and ``x-api-key`` when ``api_key`` is set.
    """

    chat_path = "/v1/messages"

    def _stop_reason(self, reply: Reply) -> str:
        return reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")

    def _tool_id(self, number: int, i: int) -> str:
        return f"toolu_loopback_{number}_{i}"

    def render_json(self, reply: Reply, request: Any, number: int) -> dict[str, Any]:
        """A ``message`` object."""
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        content += [
            {
                "type": "tool_use",
                "id": self._tool_id(number, i),
                "name": name,
                "input": _input(args),
            }
            for i, (name, args) in enumerate(reply.tool_calls)
        ]
        assert reply.usage is not None  # filled in by the base class
        return {
            "id": f"msg_loopback_{number}",
            "type": "message",
            "role": "assistant",
            "model": request.get("model", self.model),
            "content": content,
            "stop_reason": self._stop_reason(reply),
            "stop_sequence": None,
            "usage": _usage(reply.usage),
        }

    def render_events(self, reply: Reply, request: Any, number: int) -> list[Event]:
        """The Messages streaming event sequence."""
        assert reply.usage is not None
        message = {
            **self.render_json(reply, request, number),
            "content": [],
            "stop_reason": None,
            "usage": _usage(reply.usage, output_tokens=1),
        }
        events: list[Event] = [("message_start", {"type": "message_start", "message": message})]
        blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        if reply.text:
            deltas = [{"type": "text_delta", "text": piece} for piece in split_text(reply.text)]
            blocks.append(({"type": "text", "text": ""}, deltas))
        for i, (name, arguments) in enumerate(reply.tool_calls):
            start = {"type": "tool_use", "id": self._tool_id(number, i), "name": name, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": fragment}
                for fragment in split_arguments(arguments)
            ]
            blocks.append((start, deltas))
        for index, (start, deltas) in enumerate(blocks):
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
            )
            if index == 0:
                events.append(("ping", {"type": "ping"}))
            events += [
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                for d in deltas
            ]
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        delta = {"stop_reason": self._stop_reason(reply), "stop_sequence": None}
        usage = {"output_tokens": reply.usage.output_tokens}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """``{"type": "error", "error": {"type", "message"}}``."""
        kind = _ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def context_window_body(self) -> dict[str, Any]:
        """Anthropic's "prompt is too long" error."""
        return self.error_body(400, "prompt is too long: 210000 tokens > 200000 maximum")

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """``x-api-key: <api_key>``, when a key is required."""
        return self.api_key is None or headers.get("x-api-key") == self.api_key

    def invalid(self, body: Any, headers: Mapping[str, str]) -> str | None:
        """The checks the Messages API makes that a client is most likely to get wrong."""
        if "anthropic-version" not in headers:
            return "anthropic-version: header is required"
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return "model: Field required"
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            return "max_tokens: Field required"
        if "system" in body and not isinstance(body["system"], str | list):
            return "system: Input should be a valid string or list"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        tool_ids: set[str] = set()
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                return f'messages.{i}.role: Input should be "user" or "assistant"'
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if not isinstance(blocks, list) or not blocks:
                return f"messages.{i}: content must be a string or a non-empty list of blocks"
            for block in blocks:
                kind = block.get("type") if isinstance(block, dict) else None
                if kind == "text" and not block.get("text"):
                    return f"messages.{i}: text content blocks must be non-empty"
                if kind == "tool_use" and not isinstance(block.get("input"), dict):
                    return f"messages.{i}: tool_use.input: Input should be a valid dictionary"
                if kind == "tool_result" and block.get("tool_use_id") not in tool_ids:
                    return (
                        f"messages.{i}: tool_result block(s) provided with an id not found in "
                        "the previous message's tool_use blocks"
                    )
            tool_ids = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
        return None

    def last_user_text(self, body: Any) -> str:
        """The text of the last user turn that has any."""
        for message in reversed(body.get("messages", [])):
            content = message.get("content")
            if message.get("role") != "user":
                continue
            if isinstance(content, str):
                return content
            text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
            if text:
                return text
        return ""

    def get(self, path: str) -> dict[str, Any] | None:
        """``GET /v1/models`` lists the one model this server pretends to be."""
        if path != "/v1/models":
            return None
        entry = {
            "type": "model",
            "id": self.model,
            "display_name": self.model,
            "created_at": "2025-01-01T00:00:00Z",
        }
        return {"data": [entry], "has_more": False, "first_id": self.model, "last_id": self.model}

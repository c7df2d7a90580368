"""An OpenAI-compatible server on 127.0.0.1 that answers from a script.

It speaks the real wire format: ``POST /v1/chat/completions`` as JSON or as a chunked SSE stream
(text in word-sized deltas, tool-call arguments split across several chunks, a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``), ``GET /v1/models``, and
OpenAI-shaped error bodies. Point :class:`keel.models._openai.OpenAIModel` at ``base_url``::

    with OpenAICompatibleServer() as server:
        server.add_reply(tool_calls=[("lookup_order", {"order_id": "123"})])
        server.add_reply("Your order ships today.", usage=(120, 8))
        model = OpenAIModel("loopback-model", base_url=server.base_url)

With an empty script it answers ``"echo: <last user message>"``.
"""

from __future__ import annotations

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

__all__ = ["Fault", "OpenAICompatibleServer", "RecordedRequest", "Reply"]

_CREATED = 1_700_000_000
_ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


class OpenAICompatibleServer(LoopbackServer):
    """Serves ``/v1/chat/completions`` and ``/v1/models``; ``base_url`` ends with ``/v1``.

    ``api_key``, when set, must arrive as ``Authorization: Bearer <key>``.
    """

    base_path = "/v1"
    chat_path = "/v1/chat/completions"

    def _finish_reason(self, reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def render_json(self, reply: Reply, request: Any, number: int) -> dict[str, Any]:
        """A ``chat.completion`` object."""
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{number}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                for i, (name, arguments) in enumerate(reply.tool_calls)
            ]
        assert reply.usage is not None  # filled in by the base class
        return {
            "id": f"chatcmpl-loopback-{number}",
            "object": "chat.completion",
            "created": _CREATED,
            "model": request.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish_reason(reply),
                }
            ],
            "usage": _usage(reply.usage),
        }

    def render_events(self, reply: Reply, request: Any, number: int) -> list[Event]:
        """``chat.completion.chunk`` events, then usage (if asked for) and ``[DONE]``."""
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": f"chatcmpl-loopback-{number}",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": request.get("model", self.model),
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> Event:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            extra = {"usage": None} if include_usage else {}
            return None, {**base, "choices": [choice], **extra}

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in split_text(reply.text or "")]
        for i, (name, arguments) in enumerate(reply.tool_calls):
            opening = {"index": i, "id": f"call_{number}_{i}", "type": "function"}
            function = {"name": name, "arguments": ""}
            events.append(chunk({"tool_calls": [{**opening, "function": function}]}))
            events += [
                chunk({"tool_calls": [{"index": i, "function": {"arguments": fragment}}]})
                for fragment in split_arguments(arguments)
            ]
        events.append(chunk({}, self._finish_reason(reply)))
        if include_usage:
            assert reply.usage is not None
            events.append((None, {**base, "choices": [], "usage": _usage(reply.usage)}))
        events.append((None, "[DONE]"))
        return events

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``."""
        kind, code = _ERROR_KINDS.get(status, ("server_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def context_window_body(self) -> dict[str, Any]:
        """OpenAI's ``context_length_exceeded`` error."""
        return {
            "error": {
                "message": "This model's maximum context length is 8192 tokens. However, your "
                "messages resulted in 9001 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """``Authorization: Bearer <api_key>``, when a key is required."""
        return self.api_key is None or headers.get("authorization") == f"Bearer {self.api_key}"

    def invalid(self, body: Any, headers: Mapping[str, str]) -> str | None:
        """The checks OpenAI makes that a client is most likely to get wrong."""
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty array"
        open_calls: set[str] = set()
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in _ROLES:
                return f"messages[{i}].role must be one of {sorted(_ROLES)}"
            if role == "tool":
                if message.get("tool_call_id") not in open_calls:
                    return (
                        f"messages[{i}]: messages with role 'tool' must be a response to a "
                        "preceding message with 'tool_calls'"
                    )
                continue
            open_calls = set()
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                if call.get("type") != "function" or not isinstance(function.get("arguments"), str):
                    return f"messages[{i}].tool_calls: each needs type 'function' and arguments"
                open_calls.add(call.get("id"))
        return None

    def last_user_text(self, body: Any) -> str:
        """The text of the last ``user`` message."""
        for message in reversed(body.get("messages", [])):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    return "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return str(content or "")
        return ""

    def get(self, path: str) -> dict[str, Any] | None:
        """``GET /v1/models`` lists the one model this server pretends to be."""
        if path != "/v1/models":
            return None
        entry = {"id": self.model, "object": "model", "created": _CREATED, "owned_by": "keel"}
        return {"object": "list", "data": [entry]}

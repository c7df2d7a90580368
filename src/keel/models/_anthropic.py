"""Anthropic's Messages API (``POST /v1/messages``, version ``2023-06-01``).

Mapping choices worth knowing:

- System messages, wherever they are in the history, are joined into the top-level ``system``.
- Consecutive messages of the same role are merged into one turn (tool results become
  ``tool_result`` blocks of a user turn), as the API expects alternating turns.
- ``output_schema`` becomes an instruction appended to ``system``: this API version has no
  JSON-schema response format. The runtime validates the answer, as for every provider.
- A stored tool call whose arguments are not a JSON object cannot be sent as ``tool_use.input``
  (which must be an object). Sending ``{}`` would show the model a call it never made, next to
  an error saying its arguments were invalid; instead the raw text is sent as
  ``{"_raw_arguments": "<text>"}``, so the model sees what it actually produced and can fix it.
- Anthropic counts cached input apart from ``input_tokens``; Keel's ``input_tokens`` is the
  total (``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``) and
  ``cached_input_tokens`` the cache reads, so that cached input is a subset as everywhere else.
- ``stop_reason == "refusal"`` raises :class:`ModelResponseError` with
  ``code == "model_content_policy"`` (not retryable).
- An ``error`` event in the middle of a stream raises the :class:`ModelHTTPError` that the same
  error type has as an HTTP status (``overloaded_error`` -> 529, retryable).
- ``ModelSettings.seed`` is ignored (the API has none); ``parallel_tool_calls=False`` becomes
  ``tool_choice.disable_parallel_tool_use``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from keel._core.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolResultMessage,
)
from keel._core.usage import Usage
from keel.errors import ConfigurationError, ModelConnectionError, ModelResponseError
from keel.models._http import HTTPModel, error_from_response, iter_sse, parse_json_object

__all__ = ["ANTHROPIC_VERSION", "AnthropicModel"]

ANTHROPIC_VERSION = "2023-06-01"

_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicModel(HTTPModel):
    """A Claude model behind the Anthropic Messages API (or a server that speaks it).

    ``max_tokens`` is required by the API; ``ModelSettings.max_tokens`` overrides it per request.
    ``timeout_s`` bounds each network phase, as for :class:`keel.models._openai.OpenAIModel`.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.anthropic.com",
        api_key: str | None = None,
        provider: str = "anthropic",
        timeout_s: float = 60.0,
        max_tokens: int = 4096,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            model,
            base_url=base_url,
            api_key=api_key,
            provider=provider,
            timeout_s=timeout_s,
            headers=headers,
            http_client=http_client,
        )
        if max_tokens <= 0:
            raise ConfigurationError(f"max_tokens must be positive, got {max_tokens}")
        self._max_tokens = max_tokens

    def _auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    @property
    def _url(self) -> str:
        return f"{self._base_url}/v1/messages"

    def _payload(self, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
        settings = request.settings
        system = [m.content for m in request.messages if isinstance(m, SystemMessage)]
        if request.output_schema is not None:
            system.append(
                f"Answer with only a JSON value named '{request.output_name}' that matches this "
                "JSON schema, with no other text and no code fences:\n"
                + json.dumps(request.output_schema, sort_keys=True)
            )
        payload: dict[str, Any] = {
            "model": self._model,
            "max_tokens": self._max_tokens if settings.max_tokens is None else settings.max_tokens,
            "messages": _messages_to_wire(request.messages),
        }
        if system:
            payload["system"] = "\n\n".join(system)
        if request.tools:
            payload["tools"] = [
                {
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": dict(tool.parameters),
                }
                for tool in request.tools
            ]
            if settings.parallel_tool_calls is False:
                payload["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}
        if settings.temperature is not None:
            payload["temperature"] = settings.temperature
        if settings.top_p is not None:
            payload["top_p"] = settings.top_p
        if stream:
            payload["stream"] = True
        return payload

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one Messages request and return the parsed response."""
        timeout_s = self._timeout(request.settings.timeout_s)
        text = await self._post_json(self._url, self._payload(request, stream=False), timeout_s)
        data = parse_json_object(text, provider=self._provider, model=self._model, what="a body")
        return self._check(self._parse_message(data))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream a Messages response as text and tool-call deltas.

        ``ToolCallDelta.index`` counts tool calls (0, 1, ...), not Anthropic content blocks.
        Raises :class:`ModelConnectionError` if the stream ends before ``message_stop`` or a
        ``stop_reason``.
        """
        timeout_s = self._timeout(request.settings.timeout_s)
        payload = self._payload(request, stream=True)
        state = _StreamState(model=self._model)
        async with self._open_stream(self._url, payload, timeout_s) as response:
            async for event in iter_sse(response):
                if state.done:
                    continue  # keep reading to the end so the connection can be reused
                data = parse_json_object(
                    event.data, provider=self._provider, model=self._model, what="a stream event"
                )
                if data.get("type") == "error":
                    raise self._stream_error(data, event.data)
                for delta in state.feed(data):
                    yield delta
        if not (state.done or state.stop_reason):
            raise ModelConnectionError(
                f"the stream from {self._provider} for model '{self._model}' ended before the "
                "answer was complete (no message_stop); the request can be retried",
                model=self._model,
            )
        yield StreamComplete(response=self._check(state.response()))

    def _stream_error(self, data: dict[str, Any], raw: str) -> Exception:
        error = data.get("error")
        kind = error.get("type") if isinstance(error, dict) else None
        status = _ERROR_STATUS.get(str(kind), 500)
        return error_from_response(
            httpx.Response(status, content=raw.encode()),
            provider=self._provider,
            model=self._model,
            secrets=self._secrets,
        )

    def _parse_message(self, data: dict[str, Any]) -> ModelResponse:
        content = data.get("content")
        if not isinstance(content, list):
            raise ModelResponseError(
                f"{self._provider} answered model '{self._model}' without a content list; "
                "check that base_url points at the Anthropic Messages API",
                model=self._model,
            )
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_use":
                calls.append(
                    ToolCall(
                        id=str(block.get("id", "")),
                        name=str(block.get("name", "")),
                        arguments=json.dumps(block.get("input", {})),
                    )
                )
        return ModelResponse(
            message=AssistantMessage(content="".join(texts) or None, tool_calls=tuple(calls)),
            usage=_parse_usage(data.get("usage")),
            model=str(data.get("model") or self._model),
            finish_reason=data.get("stop_reason"),
            provider_response_id=data.get("id"),
        )

    def _check(self, response: ModelResponse) -> ModelResponse:
        if response.finish_reason == "refusal":
            error = ModelResponseError(
                f"{self._provider} refused to answer with model '{self._model}' for policy "
                "reasons; sending the same request will not help",
                model=self._model,
                retryable=False,
            )
            error.code = "model_content_policy"
            raise error
        return response


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


def _message_blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(message, ToolResultMessage):
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content,
        }
        if message.is_error:
            block["is_error"] = True
        return "user", [block]
    # The API rejects empty text blocks, so they are left out.
    blocks: list[dict[str, Any]] = (
        [{"type": "text", "text": message.content}] if message.content else []
    )
    if isinstance(message, AssistantMessage):
        blocks += [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": _tool_input(c.arguments)}
            for c in message.tool_calls
        ]
    return message.role, blocks


def _messages_to_wire(messages: Sequence[Message]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            continue
        role, blocks = _message_blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _int(mapping: Any, key: str) -> int:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _parse_usage(raw: Any) -> Usage:
    cache_read = _int(raw, "cache_read_input_tokens")
    total_input = _int(raw, "input_tokens") + cache_read + _int(raw, "cache_creation_input_tokens")
    return Usage(
        requests=1,
        input_tokens=total_input,
        output_tokens=_int(raw, "output_tokens"),
        cached_input_tokens=cache_read,
    )


@dataclass(slots=True)
class _PendingCall:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class _StreamState:
    """Folds Messages stream events into deltas and, at the end, the whole response."""

    def __init__(self, *, model: str) -> None:
        self._model = model
        self._start: dict[str, Any] = {}
        self._usage: dict[str, Any] = {}
        self._text: list[str] = []
        self._calls: list[_PendingCall] = []
        self._call_of_block: dict[int, int] = {}
        self.stop_reason: str | None = None
        self.done = False

    def feed(self, data: dict[str, Any]) -> list[StreamEvent]:
        """Absorb one event; return the deltas it carries."""
        kind = data.get("type")
        if kind == "message_start" and isinstance(data.get("message"), dict):
            self._start = data["message"]
            self._usage.update(self._start.get("usage") or {})
        elif kind == "content_block_start":
            return self._block_start(data.get("index", 0), data.get("content_block") or {})
        elif kind == "content_block_delta":
            return self._block_delta(data.get("index", 0), data.get("delta") or {})
        elif kind == "message_delta":
            # message_delta usage is cumulative: it replaces what message_start said.
            self._usage.update(data.get("usage") or {})
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
        elif kind == "message_stop":
            self.done = True
        return []

    def _block_start(self, index: int, block: dict[str, Any]) -> list[StreamEvent]:
        if block.get("type") == "text" and block.get("text"):
            self._text.append(block["text"])
            return [TextDelta(text=block["text"])]
        if block.get("type") != "tool_use":
            return []
        initial = json.dumps(block["input"]) if block.get("input") else ""
        call = _PendingCall(id=str(block.get("id", "")), name=str(block.get("name", "")))
        call.arguments.append(initial)
        self._call_of_block[index] = len(self._calls)
        self._calls.append(call)
        position = self._call_of_block[index]
        return [ToolCallDelta(index=position, id=call.id, name=call.name, arguments=initial)]

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[StreamEvent]:
        if delta.get("type") == "text_delta":
            text = str(delta.get("text", ""))
            self._text.append(text)
            return [TextDelta(text=text)] if text else []
        if delta.get("type") == "input_json_delta" and index in self._call_of_block:
            position = self._call_of_block[index]
            fragment = str(delta.get("partial_json", ""))
            self._calls[position].arguments.append(fragment)
            return [ToolCallDelta(index=position, arguments=fragment)]
        return []

    def response(self) -> ModelResponse:
        """The whole response assembled from the events fed so far."""
        calls = tuple(
            ToolCall(id=c.id, name=c.name, arguments="".join(c.arguments) or "{}")
            for c in self._calls
        )
        return ModelResponse(
            message=AssistantMessage(content="".join(self._text) or None, tool_calls=calls),
            usage=_parse_usage(self._usage),
            model=str(self._start.get("model") or self._model),
            finish_reason=self.stop_reason,
            provider_response_id=self._start.get("id"),
        )

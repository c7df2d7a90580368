"""OpenAI-compatible Chat Completions: OpenAI itself, vLLM, Ollama, llama.cpp server, LM Studio.

Only the widely shared subset of the API is used (``/chat/completions`` with ``tools`` and
``response_format``), so one class serves every server that speaks it. Point ``base_url`` at the
server's ``/v1`` root; local servers need no API key, and none is sent if none is given.

A reply cut short by the provider's content filter (``finish_reason == "content_filter"``)
raises :class:`keel.errors.ModelResponseError` with ``code == "model_content_policy"`` and
``retryable == False``: the answer is incomplete by the provider's decision, so handing it to the
run as if it were whole would be wrong, and sending the same request again will not help. An
HTTP error whose provider code is ``content_filter`` carries the same ``code``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
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
    UserMessage,
)
from keel._core.usage import Usage
from keel.errors import ModelConnectionError, ModelResponseError
from keel.models._http import HTTPModel, iter_sse, parse_json_object, redact

__all__ = ["OpenAIModel"]


class OpenAIModel(HTTPModel):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``timeout_s`` bounds each network phase (connecting, writing, and each wait for more of
    the answer), so a long stream that keeps producing is never cut; ``ModelSettings.timeout_s``
    overrides it per request. ``name`` is ``f"{provider}:{model}"``, e.g. ``ollama:llama3.2``.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        provider: str = "openai",
        timeout_s: float = 60.0,
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

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    @property
    def _url(self) -> str:
        return f"{self._base_url}/chat/completions"

    def _payload(self, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._model,
            "messages": [_message_to_wire(message) for message in request.messages],
        }
        settings = request.settings
        if request.tools:
            payload["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": dict(tool.parameters),
                    },
                }
                for tool in request.tools
            ]
            if settings.parallel_tool_calls is not None:
                payload["parallel_tool_calls"] = settings.parallel_tool_calls
        if request.output_schema is not None:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.output_name,
                    "schema": dict(request.output_schema),
                    "strict": False,
                },
            }
        for key in ("temperature", "max_tokens", "top_p", "seed"):
            value = getattr(settings, key)
            if value is not None:
                payload[key] = value
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return payload

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one Chat Completions request and return the parsed response."""
        timeout_s = self._timeout(request.settings.timeout_s)
        text = await self._post_json(self._url, self._payload(request, stream=False), timeout_s)
        data = parse_json_object(text, provider=self._provider, model=self._model, what="a body")
        return self._check(_parse_completion(data, model=self._model, provider=self._provider))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream a Chat Completions response as text and tool-call deltas.

        Raises :class:`ModelConnectionError` if the stream ends before ``[DONE]`` or a
        ``finish_reason``: the answer is incomplete and the request can be retried.
        """
        timeout_s = self._timeout(request.settings.timeout_s)
        payload = self._payload(request, stream=True)
        async with self._open_stream(self._url, payload, timeout_s) as response:
            if response.headers.get("content-type", "").startswith("application/json"):
                # Some servers ignore "stream" and answer in one piece; accept that.
                body = (await response.aread()).decode("utf-8", "replace")
                data = parse_json_object(
                    body, provider=self._provider, model=self._model, what="a body"
                )
                result = self._check(
                    _parse_completion(data, model=self._model, provider=self._provider)
                )
                if result.message.content:
                    yield TextDelta(text=result.message.content)
                yield StreamComplete(response=result)
                return
            assembler = _StreamAssembler(model=self._model, provider=self._provider)
            async for event in iter_sse(response):
                if assembler.done:
                    continue  # keep reading to the end so the connection can be reused
                if event.data.strip() == "[DONE]":
                    assembler.done = True
                    continue
                chunk = parse_json_object(
                    event.data, provider=self._provider, model=self._model, what="a stream chunk"
                )
                for delta in assembler.feed(chunk, secrets=self._secrets):
                    yield delta
        if not (assembler.done or assembler.finish_reason):
            raise ModelConnectionError(
                f"the stream from {self._provider} for model '{self._model}' ended before the "
                "answer was complete (no finish_reason and no [DONE]); the request can be retried",
                model=self._model,
            )
        yield StreamComplete(response=self._check(assembler.response()))

    def _check(self, response: ModelResponse) -> ModelResponse:
        if response.finish_reason == "content_filter":
            error = ModelResponseError(
                f"{self._provider} stopped the answer of model '{self._model}' with its content "
                "filter; the reply is incomplete, and sending the same request will not help",
                model=self._model,
                retryable=False,
            )
            error.code = "model_content_policy"
            raise error
        return response


def _message_to_wire(message: Message) -> dict[str, Any]:
    if isinstance(message, SystemMessage | UserMessage):
        return {"role": message.role, "content": message.content}
    if isinstance(message, ToolResultMessage):
        # Chat Completions has no error flag on tool results; the content must say so.
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    wire: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    elif message.content is None:
        wire["content"] = ""
    return wire


def _int(mapping: Any, key: str) -> int:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _parse_usage(raw: Any) -> Usage:
    """Usage from an OpenAI ``usage`` object; absent fields count as zero, the call as one."""
    if not isinstance(raw, dict):
        return Usage(requests=1)
    return Usage(
        requests=1,
        input_tokens=_int(raw, "prompt_tokens"),
        output_tokens=_int(raw, "completion_tokens"),
        cached_input_tokens=_int(raw.get("prompt_tokens_details"), "cached_tokens"),
        reasoning_tokens=_int(raw.get("completion_tokens_details"), "reasoning_tokens"),
    )


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers answer with content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def _arguments(raw: Any) -> str:
    """The raw argument text, kept as sent even if it is not valid JSON (the runtime checks)."""
    if raw is None:
        return "{}"
    return raw if isinstance(raw, str) else json.dumps(raw)


def _call_id(raw: Any) -> str:
    return raw if isinstance(raw, str) and raw else f"call_{uuid.uuid4().hex[:24]}"


def _parse_completion(data: dict[str, Any], *, model: str, provider: str) -> ModelResponse:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ModelResponseError(
            f"{provider} answered model '{model}' without any choices; check that base_url "
            "points at an OpenAI-compatible /v1 endpoint",
            model=model,
        )
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ModelResponseError(f"{provider} sent a choice with no message", model=model)
    calls = []
    for raw in message.get("tool_calls") or ():
        function = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ModelResponseError(
                f"{provider} sent a tool call without a function name for model '{model}'",
                model=model,
            )
        calls.append(
            ToolCall(
                id=_call_id(raw.get("id")),
                name=function["name"],
                arguments=_arguments(function.get("arguments")),
            )
        )
    return ModelResponse(
        message=AssistantMessage(content=_text(message.get("content")), tool_calls=tuple(calls)),
        usage=_parse_usage(data.get("usage")),
        model=str(data.get("model") or model),
        finish_reason=choice.get("finish_reason"),
        provider_response_id=data.get("id"),
    )


class _StreamAssembler:
    """Turns Chat Completions chunks into deltas and, at the end, the whole response."""

    def __init__(self, *, model: str, provider: str) -> None:
        self._model = model
        self._provider = provider
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._usage = Usage(requests=1)
        self._response_id: str | None = None
        self._reported_model = ""
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, chunk: dict[str, Any], *, secrets: tuple[str, ...]) -> list[StreamEvent]:
        """Absorb one chunk; return the deltas it carries."""
        if "error" in chunk:
            error = chunk["error"]
            detail = error.get("message") if isinstance(error, dict) else error
            raise ModelResponseError(
                f"{self._provider} reported an error in the middle of the stream for model "
                f"'{self._model}': {redact(str(detail), secrets)[:500]}",
                model=self._model,
            )
        self._response_id = self._response_id or chunk.get("id")
        self._reported_model = self._reported_model or str(chunk.get("model") or "")
        if isinstance(chunk.get("usage"), dict):
            self._usage = _parse_usage(chunk["usage"])
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = _text(delta.get("content"))
            if text:
                self._text.append(text)
                events.append(TextDelta(text=text))
            for position, piece in enumerate(delta.get("tool_calls") or ()):
                events.append(self._tool_piece(position, piece))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _tool_piece(self, position: int, piece: Any) -> ToolCallDelta:
        if not isinstance(piece, dict):
            raise ModelResponseError(
                f"{self._provider} sent a malformed tool-call delta for model '{self._model}'",
                model=self._model,
            )
        index = piece.get("index", position)
        function = piece.get("function") or {}
        call = self._calls.setdefault(index, {"id": None, "name": None, "arguments": []})
        call_id, name = piece.get("id"), function.get("name")
        arguments = function.get("arguments")
        fragment = "" if arguments is None else _arguments(arguments)
        call["id"] = call["id"] or call_id
        call["name"] = call["name"] or name
        call["arguments"].append(fragment)
        return ToolCallDelta(index=index, id=call_id, name=name, arguments=fragment)

    def response(self) -> ModelResponse:
        """The whole response assembled from everything fed so far."""
        calls = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call["name"]:
                raise ModelResponseError(
                    f"{self._provider} streamed a tool call without a name for model "
                    f"'{self._model}'",
                    model=self._model,
                )
            calls.append(
                ToolCall(
                    id=_call_id(call["id"]),
                    name=call["name"],
                    arguments="".join(call["arguments"]) or "{}",
                )
            )
        text = "".join(self._text)
        return ModelResponse(
            message=AssistantMessage(content=text or None, tool_calls=tuple(calls)),
            usage=self._usage,
            model=self._reported_model or self._model,
            finish_reason=self.finish_reason,
            provider_response_id=self._response_id,
        )

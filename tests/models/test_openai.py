"""OpenAIModel against a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import traceback
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from keel._core.messages import (
    AssistantMessage,
    ModelRequest,
    ModelSettings,
    StreamComplete,
    StreamEvent,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from keel._core.usage import Usage
from keel.errors import (
    ConfigurationError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelResponseError,
    ModelTimeoutError,
)
from keel.models._openai import OpenAIModel
from keel.testing._openai_server import Fault, OpenAICompatibleServer

API_KEY = "sk-test-4f1c2b9a7e3d5c6b8a9f0e1d"
HELLO = ModelRequest(messages=[UserMessage(content="Where is my order?")])
LOOKUP = ToolDefinition(
    name="lookup_order",
    description="Find an order by id.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}},
)


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer(api_key=API_KEY) as srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
async def model(server: OpenAICompatibleServer) -> AsyncIterator[OpenAIModel]:
    llm = OpenAIModel("gpt-test", base_url=server.base_url, api_key=API_KEY, timeout_s=5)
    yield llm
    await llm.aclose()


async def collect(model: OpenAIModel, request: ModelRequest = HELLO) -> list[StreamEvent]:
    return [event async for event in model.stream(request)]


async def collect_into(stream: AsyncIterator[StreamEvent], seen: list[StreamEvent]) -> None:
    async for event in stream:
        seen.append(event)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- request mapping ---------------------------------------------------------------------------


async def test_request_maps_messages_tools_schema_and_settings(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    request = ModelRequest(
        messages=[
            SystemMessage(content="Be brief."),
            UserMessage(content="Where is order 123?"),
            AssistantMessage(
                content="Let me check.",
                tool_calls=(ToolCall(id="call_a", name="lookup_order", arguments='{"order_id":'),),
            ),
            ToolResultMessage(tool_call_id="call_a", name="lookup_order", content="shipped"),
        ],
        tools=[LOOKUP],
        output_schema=schema,
        output_name="order_status",
        settings=ModelSettings(
            temperature=0.2, max_tokens=50, top_p=0.9, seed=7, parallel_tool_calls=False
        ),
    )

    await model.request(request)

    [received] = server.requests
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {API_KEY}"
    assert received.body == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is order 123?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        # Stored arguments travel back untouched, even when malformed.
                        "function": {"name": "lookup_order", "arguments": '{"order_id":'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "shipped"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup_order",
                    "description": "Find an order by id.",
                    "parameters": dict(LOOKUP.parameters),
                },
            }
        ],
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "order_status", "schema": schema, "strict": False},
        },
        "temperature": 0.2,
        "max_tokens": 50,
        "top_p": 0.9,
        "seed": 7,
    }


async def test_parallel_tool_calls_is_only_sent_with_tools(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    await model.request(
        ModelRequest(messages=HELLO.messages, settings=ModelSettings(parallel_tool_calls=True))
    )
    assert "parallel_tool_calls" not in server.requests[0].body
    assert "tools" not in server.requests[0].body


async def test_no_api_key_sends_no_authorization_header() -> None:
    with OpenAICompatibleServer() as server:
        model = OpenAIModel("llama3", base_url=server.base_url, provider="ollama")
        try:
            response = await model.request(HELLO)
        finally:
            await model.aclose()
    assert response.message.content == "echo: Where is my order?"
    assert "authorization" not in server.requests[0].headers
    assert model.name == "ollama:llama3"


async def test_extra_headers_are_sent(server: OpenAICompatibleServer) -> None:
    model = OpenAIModel(
        "gpt-test", base_url=server.base_url, api_key=API_KEY, headers={"X-Team": "support"}
    )
    await model.request(HELLO)
    await model.aclose()
    assert server.requests[0].headers["x-team"] == "support"


# -- responses ---------------------------------------------------------------------------------


async def test_text_response_and_usage_are_parsed(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    usage = Usage(
        requests=1, input_tokens=100, output_tokens=20, cached_input_tokens=40, reasoning_tokens=5
    )
    server.add_reply("It ships today.", usage=usage)

    response = await model.request(HELLO)

    assert response.message == AssistantMessage(content="It ships today.")
    assert response.usage == usage
    assert response.finish_reason == "stop"
    assert response.provider_response_id == "chatcmpl-loopback-1"
    assert response.model == "gpt-test"


async def test_several_tool_calls_keep_their_raw_arguments(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_reply(
        tool_calls=[("lookup_order", {"order_id": "123"}), ("refund", '{"amount": 12,')]
    )

    response = await model.request(ModelRequest(messages=HELLO.messages, tools=[LOOKUP]))

    first, second = response.message.tool_calls
    assert (first.name, json.loads(first.arguments)) == ("lookup_order", {"order_id": "123"})
    assert (second.name, second.arguments) == ("refund", '{"amount": 12,')
    assert first.id != second.id
    assert response.message.content is None
    assert response.finish_reason == "tool_calls"


async def test_missing_usage_counts_the_request_with_zero_tokens(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    body = {"id": "x", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}
    server.add_fault(Fault.status(200, body=body))

    response = await model.request(HELLO)

    assert response.usage == Usage(requests=1)
    assert response.message.content == "hi"


async def test_body_without_choices_raises_response_error(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_fault(Fault.status(200, body={"object": "list", "data": []}))
    with pytest.raises(ModelResponseError, match="without any choices"):
        await model.request(HELLO)


async def test_content_filter_finish_raises_a_non_retryable_policy_error(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_reply("I can", finish_reason="content_filter")
    with pytest.raises(ModelResponseError) as caught:
        await model.request(HELLO)
    assert caught.value.code == "model_content_policy"
    assert caught.value.retryable is False


# -- streaming ---------------------------------------------------------------------------------


async def test_stream_text_deltas_reassemble_with_usage_from_the_last_chunk(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_reply("Your order ships today.", usage=(30, 6))

    events = await collect(model)

    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(texts) > 1
    assert "".join(texts) == "Your order ships today."
    complete = events[-1]
    assert isinstance(complete, StreamComplete)
    assert complete.response.message.content == "Your order ships today."
    assert complete.response.usage == Usage(requests=1, input_tokens=30, output_tokens=6)
    assert complete.response.finish_reason == "stop"
    body = server.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_stream_tool_call_fragments_reassemble(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_reply(
        "Checking.",
        tool_calls=[("lookup_order", {"order_id": "123"}), ("lookup_order", {"order_id": "456"})],
    )

    events = await collect(model, ModelRequest(messages=HELLO.messages, tools=[LOOKUP]))

    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    for index, order_id in [(0, "123"), (1, "456")]:
        mine = [p for p in pieces if p.index == index]
        assert len([p for p in mine if p.arguments]) > 1  # really split across chunks
        assert json.loads("".join(p.arguments for p in mine)) == {"order_id": order_id}
    complete = events[-1]
    assert isinstance(complete, StreamComplete)
    calls = complete.response.message.tool_calls
    assert [json.loads(c.arguments)["order_id"] for c in calls] == ["123", "456"]
    assert [c.id for c in calls] == [p.id for p in pieces if p.id]
    assert complete.response.message.content == "Checking."


async def test_stream_accepts_a_server_that_answers_in_one_json_piece(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    body = {"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]}
    server.add_fault(Fault.status(200, body=body))

    events = await collect(model)

    assert events[0] == TextDelta(text="whole")
    assert isinstance(events[-1], StreamComplete)


async def test_stream_that_ends_without_done_raises_connection_error(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}
    body = f"data: {json.dumps(chunk)}\n\n"
    server.add_fault(Fault.status(200, body=body, headers={"Content-Type": "text/event-stream"}))

    with pytest.raises(ModelConnectionError, match="ended before the answer was complete"):
        await collect(model)


async def test_error_chunk_mid_stream_raises_response_error(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    body = 'data: {"error": {"message": "upstream overloaded"}}\n\n'
    server.add_fault(Fault.status(200, body=body, headers={"Content-Type": "text/event-stream"}))
    with pytest.raises(ModelResponseError, match="upstream overloaded"):
        await collect(model)


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
async def test_rate_limit_is_retryable_with_retry_after(
    server: OpenAICompatibleServer, model: OpenAIModel, streaming: bool
) -> None:
    server.add_fault(Fault.status(429, retry_after=2))
    with pytest.raises(ModelHTTPError) as caught:
        await (collect(model) if streaming else model.request(HELLO))
    assert (caught.value.status, caught.value.retryable) == (429, True)
    assert caught.value.retry_after == 2.0
    assert caught.value.code == "model_rate_limited"


async def test_retry_after_ms_header_is_used(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_fault(Fault.status(429, headers={"retry-after-ms": "250"}))
    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)
    assert caught.value.retry_after == 0.25


async def test_server_error_is_retryable(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_fault(Fault.status(500))
    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)
    assert (caught.value.status, caught.value.retryable) == (500, True)


async def test_bad_request_is_not_retryable_and_quotes_the_provider(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    body = {"error": {"message": "Invalid schema for function 'x'", "type": "invalid_request"}}
    server.add_fault(Fault.status(400, body=body))
    with pytest.raises(ModelHTTPError, match="Invalid schema for function 'x'") as caught:
        await model.request(HELLO)
    assert caught.value.retryable is False


async def test_wrong_api_key_is_not_retryable_and_quotes_the_provider(
    server: OpenAICompatibleServer,
) -> None:
    model = OpenAIModel("gpt-test", base_url=server.base_url, api_key="sk-wrong-key-123456")
    with pytest.raises(ModelHTTPError, match="invalid API key") as caught:
        await model.request(HELLO)
    await model.aclose()
    assert (caught.value.status, caught.value.retryable) == (401, False)
    assert caught.value.code == "model_authentication"


async def test_api_key_echoed_by_the_provider_is_redacted(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {API_KEY}.", "code": None}}
    server.add_fault(Fault.status(401, body=body))
    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)
    assert "Incorrect API key provided: [REDACTED]" in str(caught.value)
    assert API_KEY not in repr(caught.value)
    assert API_KEY not in (caught.value.body or "")


@pytest.mark.parametrize("streaming", [False, True])
async def test_delay_beyond_the_request_timeout_raises_timeout_error(
    server: OpenAICompatibleServer, model: OpenAIModel, streaming: bool
) -> None:
    server.add_fault(Fault.delay(30))
    # The model's own timeout is 5 s: the per-request setting must win.
    slow = ModelRequest(messages=HELLO.messages, settings=ModelSettings(timeout_s=0.2))
    with pytest.raises(ModelTimeoutError) as caught:
        await (collect(model, slow) if streaming else model.request(slow))
    assert caught.value.retryable is True


@pytest.mark.parametrize("streaming", [False, True])
async def test_malformed_json_raises_response_error(
    server: OpenAICompatibleServer, model: OpenAIModel, streaming: bool
) -> None:
    server.add_fault(Fault.malformed_json())
    with pytest.raises(ModelResponseError, match="not a JSON object"):
        await (collect(model) if streaming else model.request(HELLO))


async def test_cut_stream_raises_connection_error_after_the_first_deltas(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_reply("one two three four five")
    server.add_fault(Fault.cut_stream(after_events=3))
    seen: list[StreamEvent] = []
    with pytest.raises(ModelConnectionError) as caught:
        await collect_into(model.stream(HELLO), seen)
    assert caught.value.retryable is True
    assert seen == [TextDelta(text="one "), TextDelta(text="two ")]


async def test_cut_json_body_raises_connection_error(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_fault(Fault.cut_stream())
    with pytest.raises(ModelConnectionError):
        await model.request(HELLO)


@pytest.mark.parametrize("streaming", [False, True])
async def test_connection_refused_raises_connection_error(streaming: bool) -> None:
    model = OpenAIModel("gpt-test", base_url=f"http://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(ModelConnectionError, match="could not connect"):
        await (collect(model) if streaming else model.request(HELLO))
    await model.aclose()


async def test_context_window_error_has_its_own_code(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    server.add_fault(Fault.context_window())
    with pytest.raises(ModelHTTPError, match="maximum context length") as caught:
        await model.request(HELLO)
    assert caught.value.code == "model_context_window"
    assert caught.value.retryable is False


async def test_content_filter_error_status_has_the_policy_code(
    server: OpenAICompatibleServer, model: OpenAIModel
) -> None:
    body = {"error": {"message": "flagged by our policy", "code": "content_filter"}}
    server.add_fault(Fault.status(400, body=body))
    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)
    assert caught.value.code == "model_content_policy"


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(429, retry_after=1),
        Fault.status(401),
        Fault.delay(30),
        Fault.malformed_json(),
        Fault.cut_stream(after_events=2),
        Fault.context_window(),
    ],
)
async def test_api_key_never_appears_in_errors(
    server: OpenAICompatibleServer, model: OpenAIModel, fault: Fault
) -> None:
    server.add_fault(fault)
    slow = ModelRequest(messages=HELLO.messages, settings=ModelSettings(timeout_s=0.3))
    with pytest.raises(ModelError) as caught:
        await collect(model, slow)
    rendered = "".join(traceback.format_exception(caught.value))
    assert API_KEY not in rendered
    assert API_KEY not in repr(caught.value)
    assert API_KEY not in repr(caught.value.__cause__)


# -- configuration and resources ---------------------------------------------------------------


def test_repr_shows_name_and_url_but_not_the_key() -> None:
    model = OpenAIModel("gpt-test", api_key=API_KEY)
    assert "openai:gpt-test" in repr(model)
    assert API_KEY not in repr(model)


def test_base_url_without_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        OpenAIModel("llama3", base_url="localhost:11434/v1")


async def test_aclose_leaves_a_borrowed_client_open(server: OpenAICompatibleServer) -> None:
    async with httpx.AsyncClient() as client:
        model = OpenAIModel(
            "gpt-test", base_url=server.base_url, api_key=API_KEY, http_client=client
        )
        await model.request(HELLO)
        await model.aclose()
        assert not client.is_closed
        await model.request(HELLO)  # still usable
    assert len(server.requests) == 2

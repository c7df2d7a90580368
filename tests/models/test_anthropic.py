"""AnthropicModel against a real Messages-API HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import traceback
from collections.abc import AsyncIterator, Iterator

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
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelResponseError,
    ModelTimeoutError,
)
from keel.models._anthropic import ANTHROPIC_VERSION, AnthropicModel
from keel.testing._anthropic_server import AnthropicCompatibleServer, Fault

API_KEY = "sk-ant-test-9d8c7b6a5f4e3d2c1b0a"
HELLO = ModelRequest(messages=[UserMessage(content="Where is my order?")])
LOOKUP = ToolDefinition(
    name="lookup_order",
    description="Find an order by id.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}},
)
EVENT_STREAM = {"Content-Type": "text/event-stream"}


@pytest.fixture
def server() -> Iterator[AnthropicCompatibleServer]:
    with AnthropicCompatibleServer(api_key=API_KEY) as srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
async def model(server: AnthropicCompatibleServer) -> AsyncIterator[AnthropicModel]:
    llm = AnthropicModel("claude-test", base_url=server.base_url, api_key=API_KEY, timeout_s=5)
    yield llm
    await llm.aclose()


async def collect(model: AnthropicModel, request: ModelRequest = HELLO) -> list[StreamEvent]:
    return [event async for event in model.stream(request)]


async def collect_into(stream: AsyncIterator[StreamEvent], seen: list[StreamEvent]) -> None:
    async for event in stream:
        seen.append(event)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def sse(*events: dict[str, object]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


# -- request mapping ---------------------------------------------------------------------------


async def test_request_maps_system_turns_tool_blocks_and_settings(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    request = ModelRequest(
        messages=[
            SystemMessage(content="Be brief."),
            UserMessage(content="Check orders 1 and 2."),
            AssistantMessage(
                content="Checking both.",
                tool_calls=(
                    ToolCall(id="toolu_1", name="lookup_order", arguments='{"order_id": "1"}'),
                    ToolCall(id="toolu_2", name="lookup_order", arguments='{"order_id": 2'),
                ),
            ),
            ToolResultMessage(tool_call_id="toolu_1", name="lookup_order", content="shipped"),
            ToolResultMessage(
                tool_call_id="toolu_2", name="lookup_order", content="bad id", is_error=True
            ),
            SystemMessage(content="Answer in English."),
        ],
        tools=[LOOKUP],
        output_schema=schema,
        output_name="order_status",
        settings=ModelSettings(temperature=0.1, top_p=0.8, seed=3, parallel_tool_calls=False),
    )

    await model.request(request)

    [received] = server.requests
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == API_KEY
    assert received.headers["anthropic-version"] == ANTHROPIC_VERSION
    body = received.body
    system = body.pop("system")
    assert system.startswith("Be brief.\n\nAnswer in English.\n\n")
    assert "order_status" in system
    assert json.dumps(schema, sort_keys=True) in system
    assert body == {
        "model": "claude-test",
        "max_tokens": 4096,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Check orders 1 and 2."}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking both."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "lookup_order",
                        "input": {"order_id": "1"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "lookup_order",
                        # Malformed stored arguments travel as text the model can see and fix.
                        "input": {"_raw_arguments": '{"order_id": 2'},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "shipped"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": "bad id",
                        "is_error": True,
                    },
                ],
            },
        ],
        "tools": [
            {
                "name": "lookup_order",
                "description": "Find an order by id.",
                "input_schema": dict(LOOKUP.parameters),
            }
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "temperature": 0.1,
        "top_p": 0.8,
    }


async def test_max_tokens_setting_overrides_the_default(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    await model.request(
        ModelRequest(messages=HELLO.messages, settings=ModelSettings(max_tokens=64))
    )
    assert server.requests[0].body["max_tokens"] == 64
    assert "system" not in server.requests[0].body


async def test_no_api_key_sends_no_api_key_header() -> None:
    with AnthropicCompatibleServer() as server:
        model = AnthropicModel("claude-test", base_url=server.base_url)
        try:
            response = await model.request(HELLO)
        finally:
            await model.aclose()
    assert response.message.content == "echo: Where is my order?"
    assert "x-api-key" not in server.requests[0].headers
    assert model.name == "anthropic:claude-test"


# -- responses ---------------------------------------------------------------------------------


async def test_text_response_and_usage_with_cache_reads_are_parsed(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    usage = Usage(requests=1, input_tokens=100, output_tokens=20, cached_input_tokens=40)
    server.add_reply("It ships today.", usage=usage)

    response = await model.request(HELLO)

    assert response.message == AssistantMessage(content="It ships today.")
    # Anthropic reports 60 uncached + 40 cache reads; Keel's input_tokens is their total.
    assert response.usage == usage
    assert response.finish_reason == "end_turn"
    assert response.provider_response_id == "msg_loopback_1"


async def test_several_tool_use_blocks_become_tool_calls(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    server.add_reply(
        "Checking.",
        tool_calls=[("lookup_order", {"order_id": "123"}), ("lookup_order", {"order_id": "456"})],
    )

    response = await model.request(ModelRequest(messages=HELLO.messages, tools=[LOOKUP]))

    calls = response.message.tool_calls
    assert [json.loads(c.arguments) for c in calls] == [{"order_id": "123"}, {"order_id": "456"}]
    assert [c.id for c in calls] == ["toolu_loopback_1_0", "toolu_loopback_1_1"]
    assert response.message.content == "Checking."
    assert response.finish_reason == "tool_use"


async def test_body_without_content_raises_response_error(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    server.add_fault(Fault.status(200, body={"id": "msg_1", "type": "message"}))
    with pytest.raises(ModelResponseError, match="without a content list"):
        await model.request(HELLO)


async def test_refusal_raises_a_non_retryable_policy_error(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    server.add_reply("I can't", finish_reason="refusal")
    with pytest.raises(ModelResponseError) as caught:
        await model.request(HELLO)
    assert caught.value.code == "model_content_policy"
    assert caught.value.retryable is False


# -- streaming ---------------------------------------------------------------------------------


async def test_stream_text_deltas_reassemble_with_usage(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    server.add_reply("Your order ships today.", usage=(30, 6))

    events = await collect(model)

    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(texts) > 1
    assert "".join(texts) == "Your order ships today."
    complete = events[-1]
    assert isinstance(complete, StreamComplete)
    assert complete.response.message.content == "Your order ships today."
    # input from message_start, output from the final message_delta (not message_start's 1)
    assert complete.response.usage == Usage(requests=1, input_tokens=30, output_tokens=6)
    assert complete.response.finish_reason == "end_turn"
    assert server.requests[0].body["stream"] is True


async def test_stream_tool_input_fragments_reassemble_indexed_by_call(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    server.add_reply(
        "Checking.",
        tool_calls=[("lookup_order", {"order_id": "123"}), ("lookup_order", {"order_id": "456"})],
    )

    events = await collect(model, ModelRequest(messages=HELLO.messages, tools=[LOOKUP]))

    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    # The text block is content block 0, yet tool-call deltas count calls from 0.
    assert sorted({p.index for p in pieces}) == [0, 1]
    for index, order_id in [(0, "123"), (1, "456")]:
        mine = [p for p in pieces if p.index == index]
        assert len([p for p in mine if p.arguments]) > 1
        assert json.loads("".join(p.arguments for p in mine)) == {"order_id": order_id}
    complete = events[-1]
    assert isinstance(complete, StreamComplete)
    calls = complete.response.message.tool_calls
    assert [c.id for c in calls] == ["toolu_loopback_1_0", "toolu_loopback_1_1"]
    assert [json.loads(c.arguments) for c in calls] == [{"order_id": "123"}, {"order_id": "456"}]


async def test_tool_call_without_arguments_streams_as_empty_object(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    start = {"id": "msg_1", "model": "claude-test", "usage": {"input_tokens": 5}}
    block = {"type": "tool_use", "id": "toolu_x", "name": "now", "input": {}}
    body = sse(
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": block},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    )
    server.add_fault(Fault.status(200, body=body, headers=EVENT_STREAM))

    events = await collect(model)

    complete = events[-1]
    assert isinstance(complete, StreamComplete)
    assert complete.response.message.tool_calls == (ToolCall(id="toolu_x", name="now"),)
    assert complete.response.usage == Usage(requests=1, input_tokens=5, output_tokens=3)


async def test_overloaded_error_event_mid_stream_is_a_retryable_529(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    body = sse(
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5}}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    server.add_fault(Fault.status(200, body=body, headers=EVENT_STREAM))
    with pytest.raises(ModelHTTPError, match="Overloaded") as caught:
        await collect(model)
    assert (caught.value.status, caught.value.retryable) == (529, True)


async def test_stream_that_ends_without_message_stop_raises_connection_error(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    body = sse({"type": "message_start", "message": {"id": "msg_1", "usage": {}}})
    server.add_fault(Fault.status(200, body=body, headers=EVENT_STREAM))
    with pytest.raises(ModelConnectionError, match="no message_stop"):
        await collect(model)


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
async def test_rate_limit_is_retryable_with_retry_after(
    server: AnthropicCompatibleServer, model: AnthropicModel, streaming: bool
) -> None:
    server.add_fault(Fault.status(429, retry_after=7))
    with pytest.raises(ModelHTTPError) as caught:
        await (collect(model) if streaming else model.request(HELLO))
    assert (caught.value.status, caught.value.retryable) == (429, True)
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("status", [500, 529])
async def test_server_errors_and_overload_are_retryable(
    server: AnthropicCompatibleServer, model: AnthropicModel, status: int
) -> None:
    server.add_fault(Fault.status(status))
    with pytest.raises(ModelHTTPError) as caught:
        await model.request(HELLO)
    assert (caught.value.status, caught.value.retryable) == (status, True)


async def test_bad_request_is_not_retryable_and_quotes_the_provider(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    error = {"type": "invalid_request_error", "message": "messages.0.content: Field required"}
    server.add_fault(Fault.status(400, body={"type": "error", "error": error}))
    with pytest.raises(ModelHTTPError, match=r"messages\.0\.content: Field required") as caught:
        await model.request(HELLO)
    assert caught.value.retryable is False


async def test_wrong_api_key_is_not_retryable_and_never_shown(
    server: AnthropicCompatibleServer,
) -> None:
    wrong = "sk-ant-wrong-0000111122223333"
    model = AnthropicModel("claude-test", base_url=server.base_url, api_key=wrong)
    with pytest.raises(ModelHTTPError, match="invalid API key") as caught:
        await model.request(HELLO)
    await model.aclose()
    assert (caught.value.status, caught.value.retryable) == (401, False)
    assert wrong not in "".join(traceback.format_exception(caught.value))


async def test_delay_beyond_the_timeout_raises_timeout_error(
    server: AnthropicCompatibleServer,
) -> None:
    server.add_fault(Fault.delay(30))
    model = AnthropicModel("claude-test", base_url=server.base_url, api_key=API_KEY, timeout_s=0.2)
    with pytest.raises(ModelTimeoutError, match=r"within 0\.2s"):
        await model.request(HELLO)
    await model.aclose()


@pytest.mark.parametrize("streaming", [False, True])
async def test_malformed_json_raises_response_error(
    server: AnthropicCompatibleServer, model: AnthropicModel, streaming: bool
) -> None:
    server.add_fault(Fault.malformed_json())
    with pytest.raises(ModelResponseError, match="not a JSON object"):
        await (collect(model) if streaming else model.request(HELLO))


async def test_cut_stream_raises_connection_error_after_the_first_deltas(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    server.add_reply("one two three four")
    # message_start, content_block_start, ping, then two text deltas
    server.add_fault(Fault.cut_stream(after_events=5))
    seen: list[StreamEvent] = []
    with pytest.raises(ModelConnectionError):
        await collect_into(model.stream(HELLO), seen)
    assert seen == [TextDelta(text="one "), TextDelta(text="two ")]


@pytest.mark.parametrize("streaming", [False, True])
async def test_connection_refused_raises_connection_error(streaming: bool) -> None:
    model = AnthropicModel("claude-test", base_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ModelConnectionError, match="could not connect"):
        await (collect(model) if streaming else model.request(HELLO))
    await model.aclose()


async def test_prompt_too_long_has_the_context_window_code(
    server: AnthropicCompatibleServer, model: AnthropicModel
) -> None:
    server.add_fault(Fault.context_window())
    with pytest.raises(ModelHTTPError, match="prompt is too long") as caught:
        await model.request(HELLO)
    assert caught.value.code == "model_context_window"
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(529),
        Fault.delay(30),
        Fault.malformed_json(),
        Fault.cut_stream(after_events=2),
        Fault.context_window(),
    ],
)
async def test_api_key_never_appears_in_errors(
    server: AnthropicCompatibleServer, model: AnthropicModel, fault: Fault
) -> None:
    server.add_fault(fault)
    slow = ModelRequest(messages=HELLO.messages, settings=ModelSettings(timeout_s=0.3))
    with pytest.raises(ModelError) as caught:
        await collect(model, slow)
    assert API_KEY not in "".join(traceback.format_exception(caught.value))
    assert API_KEY not in repr(caught.value)
    assert API_KEY not in repr(model)

"""The loopback provider servers themselves: routes, script, validation, faults, shutdown."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from keel.testing._anthropic_server import AnthropicCompatibleServer
from keel.testing._loopback import LoopbackServer
from keel.testing._openai_server import Fault, OpenAICompatibleServer

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {**CHAT, "max_tokens": 10}
VERSION = {"anthropic-version": "2023-06-01"}


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (OpenAICompatibleServer(model="qwen"), {"id": "qwen", "object": "model"}),
        (AnthropicCompatibleServer(model="claude"), {"id": "claude", "type": "model"}),
    ],
)
async def test_models_endpoint_lists_the_configured_model(
    server: LoopbackServer, expected: dict[str, str]
) -> None:
    async with server, httpx.AsyncClient() as client:
        answer = await client.get(f"{server.root_url}/v1/models")
    assert answer.status_code == 200
    assert expected.items() <= answer.json()["data"][0].items()


async def test_unknown_route_is_a_provider_shaped_404() -> None:
    async with OpenAICompatibleServer() as server, httpx.AsyncClient() as client:
        answer = await client.post(f"{server.base_url}/embeddings", json={})
    assert answer.status_code == 404
    assert "no route" in answer.json()["error"]["message"]


async def test_requests_are_recorded_with_path_headers_and_body() -> None:
    async with OpenAICompatibleServer() as server, httpx.AsyncClient() as client:
        await client.post(
            f"{server.base_url}/chat/completions", json=CHAT, headers={"X-Trace": "abc"}
        )
    [recorded] = server.requests
    assert (recorded.method, recorded.path, recorded.body) == ("POST", "/v1/chat/completions", CHAT)
    assert recorded.headers["x-trace"] == "abc"


async def test_script_is_used_in_order_then_echoes() -> None:
    async with OpenAICompatibleServer() as server, httpx.AsyncClient() as client:
        server.add_reply("first")
        server.add_reply("second")
        url = f"{server.base_url}/chat/completions"
        texts = [
            (await client.post(url, json=CHAT)).json()["choices"][0]["message"]["content"]
            for _ in range(3)
        ]
    assert texts == ["first", "second", "echo: hi"]
    assert server.pending_replies == 0


async def test_openai_server_rejects_a_tool_message_without_a_preceding_call() -> None:
    body = {**CHAT, "messages": [{"role": "tool", "tool_call_id": "x", "content": "42"}]}
    async with OpenAICompatibleServer() as server, httpx.AsyncClient() as client:
        answer = await client.post(f"{server.base_url}/chat/completions", json=body)
    assert answer.status_code == 400
    assert "preceding message with 'tool_calls'" in answer.json()["error"]["message"]


async def test_anthropic_server_requires_the_version_header_and_max_tokens() -> None:
    async with AnthropicCompatibleServer() as server, httpx.AsyncClient() as client:
        url = f"{server.base_url}/v1/messages"
        no_version = await client.post(url, json=MESSAGES)
        no_max = await client.post(url, json=CHAT, headers=VERSION)
        fine = await client.post(url, json=MESSAGES, headers=VERSION)
    assert [no_version.status_code, no_max.status_code, fine.status_code] == [400, 400, 200]
    assert no_version.json()["error"]["type"] == "invalid_request_error"


async def test_openai_stream_sends_usage_only_when_asked() -> None:
    async with OpenAICompatibleServer() as server, httpx.AsyncClient() as client:
        url = f"{server.base_url}/chat/completions"
        plain = await client.post(url, json={**CHAT, "stream": True})
        options = {"stream": True, "stream_options": {"include_usage": True}}
        with_usage = await client.post(url, json={**CHAT, **options})
    assert plain.headers["transfer-encoding"] == "chunked"
    assert '"prompt_tokens"' not in plain.text
    assert plain.text.endswith("data: [DONE]\n\n")
    last_chunk = json.loads(with_usage.text.split("data: ")[-2])
    assert last_chunk["choices"] == []
    assert last_chunk["usage"]["total_tokens"] > 0


async def test_cut_stream_sends_exactly_the_requested_events() -> None:
    seen: list[str] = []
    async with OpenAICompatibleServer() as server, httpx.AsyncClient() as client:
        server.add_reply("a b c d e f")
        server.add_fault(Fault.cut_stream(after_events=4))
        body = {**CHAT, "stream": True}
        with pytest.raises(httpx.RemoteProtocolError):
            await read_lines(client, f"{server.base_url}/chat/completions", body, seen)
    assert len([line for line in seen if line.startswith("data: ")]) == 4


async def read_lines(client: httpx.AsyncClient, url: str, body: object, seen: list[str]) -> None:
    async with client.stream("POST", url, json=body) as answer:
        async for line in answer.aiter_lines():
            seen.append(line)


async def test_chaos_rate_is_reproducible_with_a_seed() -> None:
    async def statuses(seed: int) -> list[int]:
        async with (
            OpenAICompatibleServer(fail_rate=0.5, seed=seed) as server,
            httpx.AsyncClient() as client,
        ):
            url = f"{server.base_url}/chat/completions"
            return [(await client.post(url, json=CHAT)).status_code for _ in range(20)]

    first, again = await statuses(7), await statuses(7)
    assert first == again
    assert set(first) == {200, 500}


async def test_stop_wakes_a_delayed_request_without_answering_it() -> None:
    server = OpenAICompatibleServer().start()
    server.add_fault(Fault.delay(60))
    server.add_reply("kept for later")
    async with httpx.AsyncClient(timeout=60) as client:
        waiting = asyncio.create_task(client.post(f"{server.base_url}/chat/completions", json=CHAT))
        await asyncio.to_thread(server.wait_for_requests, 1)
        await asyncio.to_thread(server.stop)
        with pytest.raises(httpx.RemoteProtocolError):
            await waiting
    assert server.pending_replies == 1
    assert server.errors == []


async def test_stop_closes_kept_alive_connections() -> None:
    server = OpenAICompatibleServer().start()
    async with httpx.AsyncClient() as client:
        url = f"{server.base_url}/chat/completions"
        assert (await client.post(url, json=CHAT)).status_code == 200
        await asyncio.to_thread(server.stop)
        with pytest.raises(httpx.TransportError):
            await client.post(url, json=CHAT)

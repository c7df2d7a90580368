"""Whole runs over real HTTP: the runtime with the OpenAI-compatible and Anthropic providers
against the loopback servers, model names resolved from settings, and the CLI on a server."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from keel import Agent, KeelSettings, Model, Price, Runtime, tool
from keel.models._anthropic import AnthropicModel
from keel.models._openai import OpenAIModel
from keel.testing import AnthropicCompatibleServer, Fault, MemoryStore, OpenAICompatibleServer

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-loopback-7d2f9c"


@tool(idempotent=True, side_effects="read")
def lookup_order(order_id: str) -> dict[str, str]:
    """Find an order by id."""
    return {"order_id": order_id, "status": "shipped"}


def agent(model: Model | str) -> Agent[str]:
    return Agent(name="support", instructions="Help.", model=model, tools=[lookup_order])


async def test_a_run_over_the_openai_wire_format() -> None:
    async with OpenAICompatibleServer(api_key=KEY) as server:
        server.add_reply(tool_calls=[("lookup_order", {"order_id": "123"})], usage=(50, 10))
        server.add_reply("Order 123 has shipped.", usage=(80, 7))
        model = OpenAIModel("gpt-4o-mini", base_url=server.base_url, api_key=KEY)
        async with Runtime(store=MemoryStore()) as runtime:
            result = await runtime.run(agent(model), "Where is order 123?")
        await model.aclose()

    assert result.status == "completed"
    assert result.output == "Order 123 has shipped."
    assert (result.usage.input_tokens, result.usage.output_tokens) == (130, 17)
    # openai:gpt-4o-mini is in the default price table: $0.15 in / $0.60 out per million.
    assert result.cost_usd == pytest.approx((130 * 0.15 + 17 * 0.6) / 1e6)
    first, second = (r.body for r in server.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["lookup_order"]
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == second["messages"][-2]["tool_calls"][0]["id"]
    assert json.loads(tool_message["content"]) == {"order_id": "123", "status": "shipped"}


async def test_a_run_over_the_anthropic_wire_format() -> None:
    async with AnthropicCompatibleServer(api_key=KEY) as server:
        server.add_reply(tool_calls=[("lookup_order", {"order_id": "123"})], usage=(40, 9))
        server.add_reply("Shipped.", usage=(60, 3))
        model = AnthropicModel("claude-test", base_url=server.base_url, api_key=KEY)
        prices = {"anthropic:claude-test": Price(input_per_mtok=3.0, output_per_mtok=15.0)}
        async with Runtime(store=MemoryStore(), prices=prices) as runtime:
            result = await runtime.run(agent(model), "Where is order 123?")
        await model.aclose()

    assert (result.status, result.output) == ("completed", "Shipped.")
    assert result.cost_usd == pytest.approx((100 * 3.0 + 12 * 15.0) / 1e6)
    second = server.requests[1].body
    assert second["system"] == "Help."
    [block] = second["messages"][-1]["content"]
    assert block["type"] == "tool_result"


async def test_model_names_resolve_through_settings_to_a_local_server() -> None:
    async with OpenAICompatibleServer(model="llama3.2") as server:
        server.add_reply("Hi from the local model.")
        settings = KeelSettings(openai_base_url=server.base_url)
        async with Runtime(store=MemoryStore(), settings=settings) as runtime:
            result = await runtime.run(agent("openai:llama3.2"), "Hi")

    assert result.output == "Hi from the local model."
    assert result.model == "openai:llama3.2"
    assert result.cost_usd is None  # no price known for this model: unknown, not free
    assert "authorization" not in server.requests[0].headers  # no key configured, none sent


async def test_a_provider_outage_pauses_the_run_with_a_clear_reason() -> None:
    async with OpenAICompatibleServer() as server:
        server.add_fault(Fault.status(503))
        model = OpenAIModel("m", base_url=server.base_url)
        async with Runtime(store=MemoryStore()) as runtime:
            result = await runtime.run(agent(model), "Hi")
        await model.aclose()

    # The outage may pass: the run waits to be resumed instead of being lost.
    assert result.status == "paused"
    assert result.reason is not None
    assert result.reason.code == "model_unavailable"
    assert "HTTP 503" in result.reason.message
    assert "resume it once the model answers again" in result.reason.message


async def test_a_request_the_provider_refuses_fails_the_run() -> None:
    async with OpenAICompatibleServer(api_key="right-key") as server:
        model = OpenAIModel("m", base_url=server.base_url, api_key="wrong-key")
        async with Runtime(store=MemoryStore()) as runtime:
            result = await runtime.run(agent(model), "Hi")
        await model.aclose()

    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.code == "model_authentication"


def test_the_example_runs_on_an_openai_compatible_server_when_asked_to(
    tmp_path: Path,
) -> None:
    with OpenAICompatibleServer(model="gpt-4o-mini") as server:
        server.add_reply(tool_calls=[("lookup_order", {"order_id": "1044"})])
        server.add_reply("Order 1044 was delivered on 2026-11-20.")
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("KEEL_MODEL", "OPENAI_API_KEY")},
            "OPENAI_BASE_URL": server.base_url,
            "KEEL_DB": str(tmp_path / "keel.db"),
        }
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "keel",
                "run",
                f"{ROOT}/examples/support.py:agent",
                "1044?",
                "--model",
                "openai:gpt-4o-mini",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Order 1044 was delivered on 2026-11-20."
    tool_result = server.requests[1].body["messages"][-1]
    assert json.loads(tool_result["content"])["status"] == "delivered"  # the example's own data


def test_tests_cannot_reach_beyond_loopback() -> None:
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="only connect to"):
        sock.connect(("192.0.2.1", 443))


def test_run_sync_twice_with_an_http_model_reconnects_on_each_loop() -> None:
    with OpenAICompatibleServer() as server:
        server.add_reply("first")
        server.add_reply("second")
        runtime = Runtime(
            store=MemoryStore(), settings=KeelSettings(openai_base_url=server.base_url)
        )
        outputs = [runtime.run_sync(agent("openai:m"), "Hi").output for _ in range(2)]
        asyncio.run(runtime.close())

    assert outputs == ["first", "second"]

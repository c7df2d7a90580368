"""An MCP server's tools as Keel tools: listed, called through a run, arguments checked
against the server's own schema first, results and errors mapped, the list kept current."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from keel import Agent, Runtime
from keel.mcp import MCPServer
from keel.testing import MemoryStore, ScriptedModel, call
from tests.mcp.conftest import HTTPServerProcess, calls_made, server_env, stdio_args


def seen(model: ScriptedModel, turn: int) -> str:
    """What the model read last before its turn ``turn`` (0-based)."""
    return str(model.requests[turn].messages[-1].content)


def stdio_server(log: Path, **options: Any) -> MCPServer:
    return MCPServer.stdio(sys.executable, args=stdio_args(), env=server_env(log), **options)


async def test_the_server_tools_are_listed_with_their_schema_and_durability(call_log: Path) -> None:
    async with stdio_server(call_log) as server:
        tools = {tool.name: tool for tool in server.current_tools()}

    assert {"lookup", "charge", "weather", "grow"} <= set(tools)
    lookup = tools["lookup"].spec
    assert lookup.parameters["properties"]["key"]["type"] == "string"
    assert lookup.parameters["required"] == ["key"]
    assert (lookup.side_effects, lookup.safe_to_repeat) == ("read", True)
    charge = tools["charge"].spec
    assert (charge.side_effects, charge.safe_to_repeat) == ("write", False)


async def test_an_agent_run_calls_a_server_tool_and_reads_its_result(call_log: Path) -> None:
    async with stdio_server(call_log) as server:
        model = ScriptedModel([call("lookup", key="a"), "It is an apple."])
        agent = Agent(name="desk", model=model, tools=list(server.current_tools()))
        result = await Runtime(store=MemoryStore()).run(agent, "What is a?")

    assert (result.status, result.output) == ("completed", "It is an apple.")
    assert seen(model, 1) == "apple"
    assert calls_made(call_log) == ["lookup a"]


async def test_arguments_that_fail_the_schema_never_reach_the_server(call_log: Path) -> None:
    async with stdio_server(call_log) as server:
        model = ScriptedModel([call("charge", amount="3"), call("charge", amount=3), "Done."])
        agent = Agent(name="desk", model=model, tools=list(server.current_tools()))
        result = await Runtime(store=MemoryStore()).run(agent, "Charge 3")

    assert result.status == "completed"
    refused = seen(model, 1)
    assert 'amount: expected integer, got string "3"' in refused
    assert calls_made(call_log) == ["charge 3"]


async def test_server_errors_and_structured_results_reach_the_model(call_log: Path) -> None:
    async with stdio_server(call_log) as server:
        model = ScriptedModel([call("refuse", reason="closed"), call("weather", city="Oslo"), "ok"])
        agent = Agent(name="desk", model=model, tools=list(server.current_tools()))
        await Runtime(store=MemoryStore()).run(agent, "Try")

    assert seen(model, 1).startswith("Error: ")
    assert "refused: closed" in seen(model, 1)
    assert '"celsius": 21' in seen(model, 2)


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_a_tool_added_by_the_server_appears_after_its_change_notice(
    protocol: str, call_log: Path
) -> None:
    # 2026-era connections hear of it on a change stream, older ones by a notification.
    async with stdio_server(call_log, protocol=protocol) as server:
        assert "extra" not in {tool.name for tool in server.current_tools()}
        grow = {tool.name: tool for tool in server.current_tools()}["grow"]
        assert await grow() == "added extra"
        async with asyncio.timeout(10):
            while "extra" not in {t.name for t in server.current_tools()}:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        extra = {tool.name: tool for tool in server.current_tools()}["extra"]
        assert await extra(word="hi") == "HI"


async def test_the_same_tools_work_over_streamable_http(http_server: HTTPServerProcess) -> None:
    async with MCPServer.http(http_server.url, prefix="srv") as server:
        model = ScriptedModel([call("srv_lookup", key="b"), "A banana."])
        agent = Agent(name="desk", model=model, tools=list(server.current_tools()))
        result = await Runtime(store=MemoryStore()).run(agent, "What is b?")

    assert (result.status, result.output) == ("completed", "A banana.")
    assert seen(model, 1) == "banana"


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_resources_and_prompts_are_readable(
    transport: str, call_log: Path, http_server: HTTPServerProcess
) -> None:
    server = stdio_server(call_log) if transport == "stdio" else MCPServer.http(http_server.url)
    async with server:
        [resource] = await server.list_resources()
        [contents] = await server.read_resource(resource.uri)
        [prompt] = await server.list_prompts()
        filled = await server.get_prompt("greet", {"name": "Bo"})

    assert (resource.uri, resource.mime_type) == ("note://hello", "text/plain")
    assert contents.text == "hello from the server"
    assert (prompt.name, [(a.name, a.required) for a in prompt.arguments]) == (
        "greet",
        [("name", True)],
    )
    assert [(m.role, m.text) for m in filled.messages] == [("user", "Say hello to Bo.")]


async def test_an_agent_given_the_server_sees_the_tools_it_offers_at_each_run(
    call_log: Path,
) -> None:
    async with stdio_server(call_log) as server:
        first = ScriptedModel([call("grow"), "Grown."])
        agent = Agent(name="desk", model=first, tools=[server])  # a tool source
        runtime = Runtime(store=MemoryStore())
        assert (await runtime.run(agent, "Grow")).output == "Grown."
        assert "extra" not in {d.name for d in first.requests[0].tools}
        async with asyncio.timeout(10):
            while "extra" not in {t.name for t in server.current_tools()}:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        later = ScriptedModel([call("extra", word="hi"), "Said."])
        result = await runtime.run(agent, "Say hi", model=later)

    assert (result.status, result.output) == ("completed", "Said.")
    assert "extra" in {d.name for d in later.requests[0].tools}
    assert seen(later, 1) == "HI"

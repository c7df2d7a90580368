"""The connection survives a restart of the server. A call that lost its server mid-way is
sent again when the tool is safe to repeat; when it is not, its effect is in doubt and the run
waits for a person. A server that died between two calls is started again before the next one
is sent, so that call is not in doubt."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from keel import Agent, Runtime
from keel._core.messages import ModelRequest
from keel.mcp import MCPServer, MCPServerUnavailableError
from keel.testing import FunctionModel, MemoryStore, Scripted, ScriptedModel, call
from tests.mcp.conftest import (
    HTTPServerProcess,
    calls_made,
    free_port,
    server_env,
    stdio_args,
)


def stdio_server(log: Path, protocol: str = "auto") -> MCPServer:
    return MCPServer.stdio(
        sys.executable,
        args=stdio_args(),
        env=server_env(log),
        backoff_s=0.05,
        protocol=protocol,
    )


async def kill_when_logged(log: Path, prefix: str) -> int:
    """Kill the server process once it logged a call starting with ``prefix``."""
    async with asyncio.timeout(20):
        while True:
            for line in calls_made(log):
                if line.startswith(prefix):
                    pid = int(line.rsplit("pid=", 1)[1])
                    os.kill(pid, signal.SIGKILL)
                    return pid
            await asyncio.sleep(0.02)


async def wait_dead(pid: int) -> None:
    """Until the process is gone or a zombie (its pipes are closed then), and a moment more:
    the time between two calls, in which the client reads the end of the pipe."""
    async with asyncio.timeout(10):
        while True:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()  # noqa: ASYNC240 - a tiny /proc file
            except FileNotFoundError:
                break
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                break
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)


async def test_a_safe_call_interrupted_by_a_crash_is_sent_again(call_log: Path) -> None:
    async with stdio_server(call_log) as server:
        model = ScriptedModel([call("slow_lookup", key="a", seconds=1.5), "Found it."])
        agent = Agent(name="desk", model=model, tools=list(server.current_tools()))
        killer = asyncio.create_task(kill_when_logged(call_log, "slow_lookup"))
        result = await Runtime(store=MemoryStore()).run(agent, "Look a up")
        killed = await killer

    assert (result.status, result.output) == ("completed", "Found it.")
    assert model.requests[1].messages[-1].content == "slow a"
    first, second = calls_made(call_log)
    assert first == f"slow_lookup a pid={killed}"
    assert second.startswith("slow_lookup a pid=")
    assert second != first


async def test_a_charge_interrupted_by_a_crash_waits_for_a_person(call_log: Path) -> None:
    async with stdio_server(call_log) as server:
        model = ScriptedModel([call("slow_charge", amount=5, seconds=1.5)])
        agent = Agent(name="desk", model=model, tools=list(server.current_tools()))
        killer = asyncio.create_task(kill_when_logged(call_log, "slow_charge"))
        result = await Runtime(store=MemoryStore()).run(agent, "Charge 5")
        await killer

    assert result.status == "awaiting_approval"
    [pending] = result.pending
    assert (pending.kind, pending.call.name) == ("interrupted", "slow_charge")
    assert pending.reason is not None
    assert "in doubt" in pending.reason
    assert [line.split(" pid=")[0] for line in calls_made(call_log)] == ["slow_charge 5"]


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_a_server_that_died_between_calls_is_restarted_before_the_next(
    protocol: str, call_log: Path
) -> None:
    async def turn(request: ModelRequest) -> Scripted:
        if len(request.messages) == 1:
            return call("pid")
        if len(request.messages) == 3:
            old = int(str(request.messages[-1].content))
            os.kill(old, signal.SIGKILL)
            await wait_dead(old)
            return call("charge", amount=5)
        return "Charged."

    async with stdio_server(call_log, protocol) as server:
        agent = Agent(name="desk", model=FunctionModel(turn), tools=list(server.current_tools()))
        result = await Runtime(store=MemoryStore()).run(agent, "Charge 5")

    assert (result.status, result.output) == ("completed", "Charged.")
    assert calls_made(call_log) == ["charge 5"]


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_an_http_server_that_went_away_and_came_back_is_reached_again(
    protocol: str, http_server: HTTPServerProcess, call_log: Path
) -> None:
    # A handshake-era server that restarted no longer knows the session: it refuses the
    # request unrun, so even a charge is sent again, in a new session.
    async with MCPServer.http(http_server.url, backoff_s=0.05, protocol=protocol) as server:
        tools = {tool.name: tool for tool in server.current_tools()}
        assert await tools["charge"](amount=1) == "charged 1"
        await asyncio.to_thread(http_server.stop)
        await asyncio.to_thread(http_server.start)
        assert await tools["charge"](amount=2) == "charged 2"
        assert await tools["lookup"](key="b") == "banana"
    assert calls_made(call_log) == ["charge 1", "charge 2", "lookup b"]


async def test_a_server_that_cannot_be_reached_is_reported_without_its_secrets() -> None:
    port = free_port()  # nothing listens there
    server = MCPServer.http(
        f"http://user:hunter2@127.0.0.1:{port}/mcp?token=s3cret",
        connect_attempts=2,
        backoff_s=0.01,
    )
    with pytest.raises(MCPServerUnavailableError) as caught:
        await server.__aenter__()
    message = caught.value.message
    assert f"HTTP server http://127.0.0.1:{port} after 2 tries" in message
    assert "hunter2" not in message
    assert "s3cret" not in message


async def test_over_http_a_safe_call_cut_by_a_crash_is_sent_again_once_the_server_is_back(
    http_server: HTTPServerProcess, call_log: Path
) -> None:
    async def crash_and_restart() -> None:
        await kill_when_logged(call_log, "slow_lookup")
        await asyncio.to_thread(http_server.stop)
        await asyncio.to_thread(http_server.start)

    async with MCPServer.http(
        http_server.url, connect_attempts=60, backoff_s=0.05, max_backoff_s=0.2
    ) as server:
        model = ScriptedModel([call("slow_lookup", key="b", seconds=1.5), "Found it."])
        agent = Agent(name="desk", model=model, tools=list(server.current_tools()))
        restarter = asyncio.create_task(crash_and_restart())
        result = await Runtime(store=MemoryStore()).run(agent, "Look b up")
        await restarter

    assert (result.status, result.output) == ("completed", "Found it.")
    assert [line.split(" pid=")[0] for line in calls_made(call_log)] == ["slow_lookup b"] * 2


async def test_over_http_a_charge_cut_by_a_crash_waits_for_a_person(
    http_server: HTTPServerProcess, call_log: Path
) -> None:
    async with MCPServer.http(http_server.url, connect_attempts=2, backoff_s=0.01) as server:
        model = ScriptedModel([call("slow_charge", amount=7, seconds=1.5)])
        agent = Agent(name="desk", model=model, tools=list(server.current_tools()))
        killer = asyncio.create_task(kill_when_logged(call_log, "slow_charge"))
        result = await Runtime(store=MemoryStore()).run(agent, "Charge 7")
        await killer

    assert result.status == "awaiting_approval"
    [pending] = result.pending
    assert (pending.kind, pending.call.name) == ("interrupted", "slow_charge")
    assert [line.split(" pid=")[0] for line in calls_made(call_log)] == ["slow_charge 7"]

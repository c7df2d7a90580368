"""``keel mcp APP``: an MCP client (the mcp package's own) starts it over stdio, calls the
app's agents as tools, and each call is a run in the store; over HTTP, Keel's own MCP client
calls it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.mcp import MCPServer
from keel.stores import open_store
from mcp import Client, StdioServerParameters
from tests.mcp.conftest import free_port

ROOT = Path(__file__).parents[2]
APP = Path(__file__).with_name("agents_app.py")


async def test_an_mcp_client_calls_an_agent_and_the_run_is_journaled(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "keel", "mcp", str(APP), "--db", str(db)],
        env=env,
        cwd=str(tmp_path),
    )
    async with Client(parameters, cache=None) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        answer = await client.call_tool("echo", {"message": "hello"})
        waiting = await client.call_tool("refunds", {"message": "refund me"})
        failed = await client.call_tool("broken", {"message": "hi"})
        again = await client.call_tool("echo", {"message": "more", "thread": "t-1"})

    assert set(listed) == {"broken", "echo", "refunds"}
    assert listed["echo"].input_schema["required"] == ["message"]
    assert not answer.is_error
    assert answer.content[0].text == "echo: hello"  # type: ignore[union-attr]
    text = waiting.content[0].text  # type: ignore[union-attr]
    assert not waiting.is_error
    assert "waiting for a person" in text
    assert "refund (approval)" in text

    assert failed.is_error
    assert "the provider refused the request" in failed.content[0].text  # type: ignore[union-attr]
    assert again.content[0].text == "echo: more"  # type: ignore[union-attr]

    store = open_store(f"sqlite:///{db}")
    try:
        listed_runs = await store.list_runs()
    finally:
        await store.close()
    runs = {run.agent: run for run in listed_runs if run.thread_id != "t-1"}
    assert [run.agent for run in listed_runs if run.thread_id == "t-1"] == ["echo"]
    assert runs["broken"].status == "failed"
    assert runs["echo"].status == "completed"
    assert runs["refunds"].status == "awaiting_approval"
    assert runs["refunds"].run_id in text


@pytest.fixture
def keel_mcp_http(tmp_path: Path) -> Iterator[str]:
    """``keel mcp APP --http`` on a free loopback port; its URL."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    command = [sys.executable, "-m", "keel", "mcp", str(APP), "--http", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--db", str(tmp_path / "keel.db")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait(timeout=10)


async def test_keel_mcp_over_http_serves_agents_to_keel_mcp_clients(keel_mcp_http: str) -> None:
    # It is still starting: the client's backoff waits for it.
    async with MCPServer.http(keel_mcp_http, connect_attempts=40, max_backoff_s=0.5) as server:
        echo = {tool.name: tool for tool in server.current_tools()}["echo"]
        assert echo.spec.safe_to_repeat is False
        assert await echo(message="over http") == "echo: over http"

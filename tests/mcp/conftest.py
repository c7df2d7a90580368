"""Real MCP servers for the tests: ``server_script.py`` over stdio (a subprocess the client
starts) and over streamable HTTP (a subprocess on a free loopback port the test starts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SCRIPT = HERE / "server_script.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stdio_args() -> list[str]:
    return [str(SCRIPT), "stdio"]


def server_env(log: Path) -> dict[str, str]:
    """The environment of a test server: the call log, and quiet logging."""
    return {"KEEL_MCP_TEST_LOG": str(log), "PATH": os.environ.get("PATH", "")}


@dataclass
class HTTPServerProcess:
    """A test server on a loopback port that the test can stop and start again."""

    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "http", str(self.port)],
            env={**os.environ, **server_env(self.log)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the test MCP server exited at start")
            with socket.socket() as sock:
                sock.settimeout(0.2)
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the test MCP server did not listen in time")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def call_log(tmp_path: Path) -> Path:
    return tmp_path / "calls.log"


def calls_made(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def http_server(call_log: Path) -> Iterator[HTTPServerProcess]:
    server = HTTPServerProcess(port=free_port(), log=call_log)
    server.start()
    try:
        yield server
    finally:
        server.stop()

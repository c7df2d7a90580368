"""A small MCP server for the tests: ``python server_script.py stdio`` or ``... http PORT``.

Every tool call is appended to the file named by ``KEEL_MCP_TEST_LOG`` (when set), one line
per call that reached the server, so a test can count the effects that happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

server = MCPServer("keel-test", log_level="ERROR")


def _log(line: str) -> None:
    path = os.environ.get("KEEL_MCP_TEST_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(line + "\n")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def lookup(key: str) -> str:
    """Look a key up in the server's table."""
    _log(f"lookup {key}")
    return {"a": "apple", "b": "banana"}.get(key, "unknown")


@server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
def charge(amount: int) -> str:
    """Charge an amount (not safe to repeat)."""
    _log(f"charge {amount}")
    return f"charged {amount}"


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def slow_lookup(key: str, seconds: float) -> str:
    """A read that takes a while."""
    _log(f"slow_lookup {key} pid={os.getpid()}")
    await asyncio.sleep(seconds)
    return f"slow {key}"


@server.tool(annotations=ToolAnnotations(destructiveHint=True, idempotentHint=False))
async def slow_charge(amount: int, seconds: float) -> str:
    """A charge that takes a while (not safe to repeat)."""
    _log(f"slow_charge {amount} pid={os.getpid()}")
    await asyncio.sleep(seconds)
    return f"charged {amount}"


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def pid() -> int:
    """The server process id."""
    return os.getpid()


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def refuse(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"refused: {reason}")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True), structured_output=True)
def weather(city: str) -> dict[str, object]:
    """Structured output."""
    return {"city": city, "celsius": 21}


def extra(word: str) -> str:
    """A tool added at run time."""
    return word.upper()


@server.tool()
async def grow(ctx: Context) -> str:
    """Add the tool 'extra' and tell clients the tool list changed."""
    server.add_tool(extra, annotations=ToolAnnotations(readOnlyHint=True))
    # A 2026-era connection hears of it on its change stream, an older one by notification.
    with contextlib.suppress(ValueError):
        await ctx.notify_tools_changed()
    session = getattr(ctx.request_context, "session", None)
    if session is not None and hasattr(session, "send_tool_list_changed"):
        await session.send_tool_list_changed()
    return "added extra"


@server.resource("note://hello", mime_type="text/plain")
def hello_note() -> str:
    """A short note."""
    return "hello from the server"


@server.prompt()
def greet(name: str) -> str:
    """Greet someone."""
    return f"Say hello to {name}."


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")

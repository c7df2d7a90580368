"""MCP (Model Context Protocol) servers as sources of tools, resources and prompts.

Install with ``pip install 'keel-runtime[mcp]'``. ::

    from keel.mcp import MCPServer

    async with MCPServer.stdio("python", args=["files_server.py"], prefix="files") as files:
        agent = Agent("desk", model="openai:gpt-4o-mini", tools=list(files.current_tools()))
        result = await runtime.run(agent, "What is in notes.txt?")

The model sees each tool's own JSON schema; arguments are checked against it before the
call. A tool's durability (safe to repeat or not) comes from the server's annotations, which
``overrides`` can correct per tool. The connection survives a restart of the server: see
:class:`MCPServer`. The other direction, Keel agents as MCP tools, is ``keel mcp APP``.
"""

from __future__ import annotations

try:
    import jsonschema  # noqa: F401

    import mcp  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        f"keel.mcp needs the '{exc.name}' package: install Keel's mcp extra: "
        "pip install 'keel-runtime[mcp]'",
        name=exc.name,
    ) from exc

from keel.mcp._convert import MCPTool
from keel.mcp._source import MCPServer
from keel.mcp._types import (
    MCPServerUnavailableError,
    Prompt,
    PromptArgument,
    PromptMessage,
    PromptResult,
    RemoteTool,
    Resource,
    ResourceContents,
    ToolOverrides,
)

__all__ = [
    "MCPServer",
    "MCPServerUnavailableError",
    "MCPTool",
    "Prompt",
    "PromptArgument",
    "PromptMessage",
    "PromptResult",
    "RemoteTool",
    "Resource",
    "ResourceContents",
    "ToolOverrides",
]

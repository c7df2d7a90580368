"""From MCP wire types to Keel's: tools with their schema and durability, results, names.

A tool keeps the server's ``inputSchema`` as the schema the model sees, and its arguments are
checked against that same schema (JSON Schema, strictly: ``"3"`` is not an integer) before
anything is sent. Whether a call is safe to repeat comes from the server's annotations
(``readOnlyHint`` means it only reads; ``idempotentHint`` that repeating it acts once), unless
the user overrides them per tool: they are hints from the server, and the runtime's rules on
retries, crashes and approvals follow from them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types
from pydantic_core import to_json

from keel._core.json_schema_args import SchemaToolSpec, compile_validator
from keel._core.toolspec import ToolSpec
from keel._tools import RunContext, Tool, ToolError
from keel.errors import ConfigurationError, ToolDefinitionError
from keel.mcp._types import (
    PromptMessage,
    RemoteTool,
    ResourceContents,
    ToolOverrides,
)

__all__ = [
    "MCPTool",
    "build_tool",
    "keel_name",
    "prompt_message",
    "remote_tool",
    "resource_contents",
    "result_text",
]

_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")
_MAX_NAME = 64
_OPTIONS = frozenset(
    {
        "idempotent",
        "side_effects",
        "requires_approval",
        "timeout_s",
        "retries",
        "max_result_chars",
        "description",
    }
)

#: Calls a server's tool: (the server's tool name, arguments, safe to repeat, idempotency key).
Caller = Callable[[str, dict[str, Any], bool, str], Awaitable[mcp_types.CallToolResult]]


def keel_name(name: str, prefix: str | None) -> str:
    """A provider-safe name for a server's tool: letters, digits, ``_`` and ``-``, at most 64
    characters, with the server's ``prefix``. A name that had to change gets a short hash of
    the original, so two names that differ only in a replaced character stay distinct."""
    full = f"{prefix}_{name}" if prefix else name
    safe = _ALLOWED.sub("_", full)
    if safe == full and len(safe) <= _MAX_NAME:
        return safe
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{safe[: _MAX_NAME - 9]}_{digest}"


def remote_tool(tool: mcp_types.Tool) -> RemoteTool:
    """The server's listing of one tool, as Keel's own value."""
    hints = tool.annotations
    return RemoteTool(
        name=tool.name,
        description=tool.description or tool.title or "",
        input_schema=tool.input_schema,
        read_only_hint=None if hints is None else hints.read_only_hint,
        destructive_hint=None if hints is None else hints.destructive_hint,
        idempotent_hint=None if hints is None else hints.idempotent_hint,
        open_world_hint=None if hints is None else hints.open_world_hint,
    )


class MCPTool(Tool):
    """A Keel tool that calls a tool of an MCP server; ``remote`` is the server's listing."""

    def __init__(self, spec: ToolSpec, remote: RemoteTool, caller: Caller) -> None:
        self.remote = remote
        self._caller = caller

        async def call_remote(**arguments: Any) -> str:
            # Called directly (not by a run): no idempotency key to pass on.
            return await self._call(arguments, "")

        call_remote.__name__ = spec.name
        call_remote.__doc__ = spec.description
        super().__init__(call_remote, spec, None)

    def bind(self, context: RunContext[Any], arguments: dict[str, Any]) -> Callable[[], Any]:
        return functools.partial(self._call, arguments, context.idempotency_key)

    async def _call(self, arguments: dict[str, Any], key: str) -> str:
        result = await self._caller(self.remote.name, arguments, self.spec.safe_to_repeat, key)
        text = result_text(result)
        if result.is_error:
            raise ToolError(text or f"tool '{self.remote.name}' failed and said nothing more")
        return text


def _options(
    remote: RemoteTool, overrides: ToolOverrides, approve_destructive: bool
) -> dict[str, Any]:
    read_only = remote.read_only_hint is True
    options: dict[str, Any] = {
        "side_effects": "read" if read_only else "write",
        "idempotent": remote.idempotent_hint is True and not read_only,
        # The protocol's default for a tool that writes is "destructive".
        "requires_approval": approve_destructive
        and not read_only
        and remote.destructive_hint is not False,
    }
    chosen = overrides(remote) if callable(overrides) else (overrides or {}).get(remote.name)
    if chosen:
        unknown = sorted(set(chosen) - _OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {', '.join(unknown)} in the overrides for MCP tool "
                f"'{remote.name}'; use {', '.join(sorted(_OPTIONS))}"
            )
        options.update(chosen)
    return options


def build_tool(
    remote: RemoteTool,
    *,
    name: str,
    caller: Caller,
    overrides: ToolOverrides = None,
    approve_destructive: bool = False,
) -> MCPTool:
    """A :class:`MCPTool` named ``name`` for ``remote``; raises :class:`ToolDefinitionError`
    when its schema is not a JSON Schema a validator accepts."""
    # The model sees the server's schema as it is; arguments are checked against it as
    # strictly as for any tool made from a schema (Tool.from_schema).
    schema = dict(remote.input_schema)
    try:
        validator = compile_validator(schema, tool=remote.name)
    except ToolDefinitionError as exc:
        raise ToolDefinitionError(
            f"MCP {exc.message}; fix the server or leave the tool out"
        ) from None
    options = _options(remote, overrides, approve_destructive)
    description = options.pop("description", None) or remote.description
    spec = SchemaToolSpec(
        name=name,
        description=description,
        parameters=schema,
        validator=validator,
        original_name=remote.name,
        **options,
    )
    return MCPTool(spec, remote, caller)


def _block_text(block: mcp_types.ContentBlock) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.EmbeddedResource):
        inner = block.resource
        if isinstance(inner, mcp_types.TextResourceContents):
            return inner.text
        return f"[resource {inner.uri}: {inner.mime_type or 'binary'} data]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[resource link: {block.uri}]"
    mime = getattr(block, "mime_type", None) or "binary"
    return f"[{getattr(block, 'type', 'content')}: {mime} data]"


def result_text(result: mcp_types.CallToolResult) -> str:
    """What the model reads of a tool result: its text content; the structured content as
    JSON when there is no text."""
    parts = [_block_text(block) for block in result.content]
    if any(parts):
        return "\n".join(part for part in parts if part)
    if result.structured_content is not None:
        return to_json(result.structured_content).decode()
    return ""


def resource_contents(
    part: mcp_types.TextResourceContents | mcp_types.BlobResourceContents,
) -> ResourceContents:
    """One part of a resource read, with a blob decoded to bytes."""
    if isinstance(part, mcp_types.TextResourceContents):
        return ResourceContents(uri=part.uri, mime_type=part.mime_type, text=part.text)
    return ResourceContents(
        uri=part.uri, mime_type=part.mime_type, blob=base64.b64decode(part.blob)
    )


def prompt_message(message: mcp_types.PromptMessage) -> PromptMessage:
    """One message of a filled prompt, its content as text."""
    return PromptMessage(role=message.role, text=_block_text(message.content))


def overrides_checked(overrides: ToolOverrides) -> ToolOverrides:
    """``overrides`` after a first check of its shape (a mapping of mappings, or a callable)."""
    if overrides is None or callable(overrides):
        return overrides
    if not isinstance(overrides, Mapping) or not all(
        isinstance(value, Mapping) for value in overrides.values()
    ):
        raise ConfigurationError(
            "overrides must map tool names to option mappings, e.g. "
            "{'charge': {'requires_approval': True}}, or be a callable"
        )
    return overrides

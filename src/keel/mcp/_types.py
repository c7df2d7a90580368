"""Keel's own views of what an MCP server offers: tools, resources and prompts.

They hold plain values, so code using :mod:`keel.mcp` never handles the ``mcp`` package's
wire types, and a later protocol version changes only the conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keel.errors import KeelError

__all__ = [
    "MCPServerUnavailableError",
    "Prompt",
    "PromptArgument",
    "PromptMessage",
    "PromptResult",
    "RemoteTool",
    "Resource",
    "ResourceContents",
    "ToolOverrides",
]


class MCPServerUnavailableError(KeelError):
    """The MCP server could not be reached (started, connected to) after a few tries.

    Nothing was sent to it, so a tool call that failed this way had no effect."""

    code = "mcp_server_unavailable"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteTool:
    """A tool as the server lists it: what an ``overrides`` callable decides on.

    The ``*_hint`` fields are the server's own annotations (``None`` when not given). They are
    hints from the server, not guarantees: override them for a server you do not trust.
    """

    name: str
    description: str
    input_schema: Mapping[str, Any]
    read_only_hint: bool | None = None
    destructive_hint: bool | None = None
    idempotent_hint: bool | None = None
    open_world_hint: bool | None = None


ToolOverrides = (
    Mapping[str, Mapping[str, Any]] | Callable[[RemoteTool], Mapping[str, Any] | None] | None
)
"""Per-tool options over what the server's annotations say: a mapping from the server's tool
name to options, or a callable given each :class:`RemoteTool`. Options: ``idempotent``,
``side_effects``, ``requires_approval``, ``timeout_s``, ``retries``, ``max_result_chars``,
``description``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    """A resource the server lists (read it with ``read_resource(uri)``)."""

    uri: str
    name: str
    description: str | None = None
    mime_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceContents:
    """One part of a resource read: ``text``, or ``blob`` (the decoded bytes)."""

    uri: str
    mime_type: str | None = None
    text: str | None = None
    blob: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptArgument:
    """An argument a prompt template takes."""

    name: str
    description: str | None = None
    required: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """A prompt template the server lists (fill it with ``get_prompt(name, arguments)``)."""

    name: str
    description: str | None = None
    arguments: tuple[PromptArgument, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptMessage:
    """One message of a filled prompt: ``role`` is ``"user"`` or ``"assistant"``; content that
    is not text (an image, a resource) is described in ``text``."""

    role: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptResult:
    """A filled prompt: its messages, in order."""

    description: str | None = None
    messages: tuple[PromptMessage, ...] = field(default=())

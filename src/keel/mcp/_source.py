"""An MCP server as a source of tools, resources and prompts, that survives its restarts.

::

    async with MCPServer.stdio("python", args=["server.py"]) as server:
        agent = Agent("desk", model=..., tools=list(server.current_tools()))

**Reconnect.** A request that finds the connection closed (the process died, the HTTP server
went away) drops it; the next request connects again, with a bounded backoff, and lists the
tools again. What happens to the call itself depends on whether the tool is safe to repeat:

- a call that could not be sent (no connection could be made) had no effect: it fails with
  :class:`MCPServerUnavailableError`, which the model reads as the call's error;
- a call of a tool that is safe to repeat that lost its connection mid-call is sent again,
  once, on a new connection;
- a call of a tool that is not safe to repeat that lost its connection mid-call may or may
  not have acted: it raises ``ToolEffectInDoubt``, and the run asks a person, as after a
  crash. Before such a call a ping checks the connection, so a server that died between two
  calls is reconnected to first instead of putting the call in doubt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx2
import mcp_types
from mcp.client._transport import TransportStreams
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from keel._redact import redact
from keel._runtime.tool_calls import ToolEffectInDoubt
from keel._tools import Tool, ToolError
from keel.errors import ConfigurationError, ToolDefinitionError, UsageError
from keel.mcp._convert import (
    MCPTool,
    build_tool,
    keel_name,
    overrides_checked,
    prompt_message,
    remote_tool,
    resource_contents,
)
from keel.mcp._link import Link, OpenTransport
from keel.mcp._types import (
    MCPServerUnavailableError,
    Prompt,
    PromptArgument,
    PromptResult,
    Resource,
    ResourceContents,
    ToolOverrides,
)
from mcp import Client, MCPError, StdioServerParameters

__all__ = ["MCPServer"]

log = logging.getLogger("keel.mcp")

T = TypeVar("T")

_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)

#: The metadata key under which a call's idempotency key is passed on to the server.
IDEMPOTENCY_META_KEY = "keel/idempotency-key"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Options:
    prefix: str | None
    overrides: ToolOverrides
    approve_destructive: bool
    connect_attempts: int
    backoff_s: float
    max_backoff_s: float
    request_timeout_s: float | None
    protocol: str


class MCPServer:
    """A connection to one MCP server; make one with :meth:`stdio` or :meth:`http` and use it
    as ``async with``. See the module docstring for what happens when the server restarts."""

    def __init__(self, connect: OpenTransport, *, describe: str, options: _Options) -> None:
        self._connect = connect
        self._describe = describe
        self._options = options
        self._link: Link | None = None
        self._opening: asyncio.Lock | None = None
        self._tools: dict[str, MCPTool] = {}
        self._changed: asyncio.Event | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._entered = False
        self._closed = False

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        **options: Any,
    ) -> MCPServer:
        """A server started as a subprocess (``command`` with ``args``, in ``cwd``) and spoken
        to over its stdin and stdout. The child gets a small safe environment (``PATH``,
        ``HOME``...; not this process's other variables, such as API keys) plus ``env``: pass
        what the server needs there. Options: see :meth:`http`."""
        if not command:
            raise ConfigurationError("MCPServer.stdio needs a command, e.g. 'python'")
        parameters = StdioServerParameters(
            command=command, args=list(args), env=None if env is None else dict(env), cwd=cwd
        )
        return cls(
            lambda: stdio_client(parameters),
            describe=f"stdio server {command!r}",
            options=_options(options),
        )

    @classmethod
    def http(cls, url: str, headers: Mapping[str, str] | None = None, **options: Any) -> MCPServer:
        """A server reached over streamable HTTP at ``url`` (e.g. ``http://127.0.0.1:8000/mcp``).

        Options (keyword-only, for :meth:`stdio` too):

        - ``prefix``: put before every tool name (``prefix_tool``), to tell servers apart;
        - ``overrides``: per-tool options over the server's annotations (see
          :data:`keel.mcp.ToolOverrides`): ``{"charge": {"requires_approval": True}}``;
        - ``approve_destructive``: ask a person before any call of a tool that writes and does
          not declare ``destructiveHint: false`` (default ``False``);
        - ``connect_attempts`` (default 4), ``backoff_s`` (0.1), ``max_backoff_s`` (2.0): how
          a lost connection is made again;
        - ``request_timeout_s``: the limit of listings, reads and prompts (default 30 s;
          tool calls are bounded by the run's tool timeout);
        - ``protocol``: ``"auto"`` (the default: the newest version both sides speak) or
          ``"legacy"`` (the initialize handshake of the protocol before 2026, for a server
          that mishandles the newer discovery).
        """
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"MCPServer.http needs an http(s) URL, got {url!r}")
        fixed = dict(headers or {})

        @asynccontextmanager
        async def connect() -> AsyncIterator[TransportStreams]:
            # Our own HTTP client only to send the headers; the mcp package makes its own
            # (with its recommended timeouts) otherwise.
            if not fixed:
                async with streamable_http_client(url) as streams:
                    yield streams
                return
            async with (
                httpx2.AsyncClient(headers=fixed, timeout=_HTTP_TIMEOUT) as http,
                streamable_http_client(url, http_client=http) as streams,
            ):
                yield streams

        return cls(connect, describe=f"HTTP server {_origin(url)}", options=_options(options))

    async def __aenter__(self) -> Self:
        if self._entered:
            raise UsageError("an MCPServer can be entered once; make a new one")
        self._entered = True
        self._opening = asyncio.Lock()
        self._changed = asyncio.Event()
        try:
            await self.refresh_tools()
        except BaseException:
            await self.aclose()
            raise
        self._refresher = asyncio.create_task(self._refresh_on_change(), name="keel-mcp-refresh")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (and stop a server process it started)."""
        self._closed = True
        if self._refresher is not None:
            self._refresher.cancel()
            # The mcp client (anyio) can absorb a cancellation that arrives inside one of its
            # requests; the flag and a wake-up end the loop even then.
            if self._changed is not None:
                self._changed.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    def current_tools(self) -> Sequence[Tool]:
        """The server's tools as they were last listed, as Keel tools."""
        return list(self._tools.values())

    # -- connection ------------------------------------------------------------------------

    async def _live(self) -> Client:
        """A connected client: the current one, or a new one after a bounded backoff."""
        if self._closed or self._opening is None:
            raise UsageError("use the MCPServer inside 'async with' before calling it")
        link = self._link
        if link is not None and not link.dead and link.client is not None:
            return link.client
        async with self._opening:
            link = self._link
            if link is not None and not link.dead and link.client is not None:
                return link.client
            if link is not None:
                await link.close()
            self._link = None
            return await self._open()

    async def _open(self) -> Client:
        options = self._options
        delay = options.backoff_s
        last: BaseException | None = None
        for attempt in range(options.connect_attempts):
            if attempt:
                await asyncio.sleep(delay)
                delay = min(delay * 2, options.max_backoff_s)
            link = Link(self._connect, self._on_change, mode=options.protocol)
            try:
                client = await link.open()
            except Exception as exc:  # noqa: BLE001 - tried again, then reported
                last = exc
                log.debug("connecting to the MCP %s failed: %r", self._describe, exc)
                continue
            self._link = link
            if self._refresher is not None:  # a reconnect: the tools may have changed
                self._on_change()
            return client
        cause = _leaf(last)
        raise MCPServerUnavailableError(
            f"could not connect to the MCP {self._describe} after {options.connect_attempts} "
            f"tries ({type(cause).__name__}: {redact(str(cause))}); check that it starts and "
            "answers"
        )

    def _drop(self, client: Client) -> None:
        link = self._link
        if link is not None and link.client is client:
            link.dead = True

    def _on_change(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _refresh_on_change(self) -> None:
        assert self._changed is not None
        while not self._closed:
            await self._changed.wait()
            self._changed.clear()
            if self._closed:
                return
            try:
                await self.refresh_tools()
            except Exception as exc:  # noqa: BLE001 - the next change or call tries again
                log.warning("refreshing the tools of the MCP %s failed: %r", self._describe, exc)

    async def _request(self, send: Callable[[Client], Awaitable[T]]) -> T:
        """Send a request that changes nothing (a listing, a read): again on a new connection
        if the first one turned out to be closed."""
        for attempt in range(2):
            client = await self._live()
            try:
                return await asyncio.wait_for(send(client), self._options.request_timeout_s)
            except MCPError as exc:
                if attempt or not (_closed(exc) or _session_lost(exc)):
                    raise
                self._drop(client)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- tools -----------------------------------------------------------------------------

    async def refresh_tools(self) -> Sequence[Tool]:
        """List the server's tools now (every page) and return them as Keel tools."""
        listed: list[mcp_types.Tool] = []
        cursor: str | None = None
        while True:
            page = await self._request(
                functools.partial(Client.list_tools, cursor=cursor, cache_mode="refresh")
            )
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        tools: dict[str, MCPTool] = {}
        for listing in listed:
            remote = remote_tool(listing)
            name = keel_name(remote.name, self._options.prefix)
            if name in tools:
                raise ToolDefinitionError(
                    f"two tools of the MCP {self._describe} are both named {name!r} for the "
                    "model; rename one with overrides or use another prefix"
                )
            try:
                tools[name] = build_tool(
                    remote,
                    name=name,
                    caller=self._call_tool,
                    overrides=self._options.overrides,
                    approve_destructive=self._options.approve_destructive,
                )
            except ToolDefinitionError as exc:
                log.warning("left out a tool of the MCP %s: %s", self._describe, exc)
        self._tools = tools
        return list(tools.values())

    async def _call_tool(
        self, name: str, arguments: dict[str, Any], repeatable: bool, key: str
    ) -> mcp_types.CallToolResult:
        meta: Any = {IDEMPOTENCY_META_KEY: key} if key else None
        for attempt in range(2):
            client = await self._live()  # MCPServerUnavailableError: nothing was sent
            try:
                result: mcp_types.CallToolResult = await client.call_tool(
                    name, arguments, meta=meta
                )
            except MCPError as exc:
                if _session_lost(exc) and not attempt:
                    # The server restarted and forgot the session: it refused the call
                    # without running it, so a new session may send it, whatever the tool.
                    self._drop(client)
                    continue
                if not _closed(exc):
                    raise ToolError(
                        f"the MCP server refused the call: {exc.error.message}"
                    ) from None
                self._drop(client)
                if not repeatable:
                    raise ToolEffectInDoubt(
                        f"the connection to the MCP {self._describe} closed during the call"
                    ) from None
                if attempt:
                    raise
                continue
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    # -- resources and prompts -------------------------------------------------------------

    async def list_resources(self) -> list[Resource]:
        """The resources the server lists (every page)."""
        found: list[Resource] = []
        cursor: str | None = None
        while True:
            page = await self._request(functools.partial(Client.list_resources, cursor=cursor))
            found.extend(
                Resource(
                    uri=str(item.uri),
                    name=item.name,
                    description=item.description,
                    mime_type=item.mime_type,
                )
                for item in page.resources
            )
            cursor = page.next_cursor
            if not cursor:
                return found

    async def read_resource(self, uri: str) -> list[ResourceContents]:
        """The contents of the resource at ``uri`` (one part or more)."""
        result = await self._request(lambda client: client.read_resource(uri))
        return [resource_contents(part) for part in result.contents]

    async def list_prompts(self) -> list[Prompt]:
        """The prompt templates the server lists (every page)."""
        found: list[Prompt] = []
        cursor: str | None = None
        while True:
            page = await self._request(functools.partial(Client.list_prompts, cursor=cursor))
            for item in page.prompts:
                arguments = tuple(
                    PromptArgument(
                        name=arg.name, description=arg.description, required=bool(arg.required)
                    )
                    for arg in item.arguments or ()
                )
                found.append(
                    Prompt(name=item.name, description=item.description, arguments=arguments)
                )
            cursor = page.next_cursor
            if not cursor:
                return found

    async def get_prompt(
        self, name: str, arguments: Mapping[str, str] | None = None
    ) -> PromptResult:
        """The prompt ``name`` filled with ``arguments``."""
        given = dict(arguments or {})
        result = await self._request(lambda client: client.get_prompt(name, given))
        return PromptResult(
            description=result.description,
            messages=tuple(prompt_message(message) for message in result.messages),
        )

    def __repr__(self) -> str:
        return f"MCPServer({self._describe}, tools={sorted(self._tools)})"


_DEFAULTS: dict[str, Any] = {
    "prefix": None,
    "overrides": None,
    "approve_destructive": False,
    "connect_attempts": 4,
    "backoff_s": 0.1,
    "max_backoff_s": 2.0,
    "request_timeout_s": 30.0,
    "protocol": "auto",
}


def _options(given: Mapping[str, Any]) -> _Options:
    unknown = sorted(set(given) - set(_DEFAULTS))
    if unknown:
        raise ConfigurationError(
            f"unknown MCPServer option(s): {', '.join(unknown)}; use {', '.join(sorted(_DEFAULTS))}"
        )
    values = {**_DEFAULTS, **given}
    prefix = values["prefix"]
    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        raise ConfigurationError("prefix must be a non-empty string, e.g. prefix='files'")
    if values["protocol"] not in ("auto", "legacy"):
        raise ConfigurationError(f"protocol must be 'auto' or 'legacy', got {values['protocol']!r}")
    if int(values["connect_attempts"]) < 1:
        raise ConfigurationError("connect_attempts must be at least 1")
    values["overrides"] = overrides_checked(values["overrides"])
    return _Options(**values)


def _closed(exc: MCPError) -> bool:
    """Whether the connection closed under the request."""
    return exc.code == mcp_types.CONNECTION_CLOSED


def _session_lost(exc: MCPError) -> bool:
    """Whether an HTTP server answered that it does not know the session (HTTP 404 to a
    request with a session id): it restarted, and the protocol says to start a new session.
    The mcp package reports it as an invalid request with these words, nothing more specific."""
    return exc.code == mcp_types.INVALID_REQUEST and exc.error.message.lower() in (
        "session not found",
        "session terminated",
    )


def _leaf(exc: BaseException | None) -> BaseException | None:
    """The first exception inside task-group wrappers: the one that says what happened."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _origin(url: str) -> str:
    """``url`` without its path, query or credentials: fit for a log or an error."""
    rest = url.split("//", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    return url.split("//", 1)[0] + "//" + rest

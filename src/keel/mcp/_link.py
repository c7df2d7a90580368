"""One live connection to an MCP server, held open by a task of its own.

The ``mcp`` client is an anyio context manager: it must be entered and left in the same task.
Tool calls come from whichever task runs them, and a reconnect happens in the middle of a
call, so each connection lives in a task that enters the client, serves until told to stop,
and leaves it. Change notifications (``notifications/tools/list_changed`` on a handshake-era
connection, a ``subscriptions/listen`` stream on a 2026-era one) wake ``on_change``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Self

import anyio
import mcp_types
from mcp.client._transport import TransportStreams
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.shared._stream_protocols import ReadStream
from mcp.shared.message import SessionMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp import Client

__all__ = ["Link"]

log = logging.getLogger("keel.mcp")

_CLOSE_TIMEOUT_S = 5.0


OpenTransport = Callable[[], AbstractAsyncContextManager[TransportStreams]]
Item = SessionMessage | Exception


class _WatchedRead:
    """The transport's read stream, calling ``on_end`` when it ends: the server's stdout
    closed (its process died) or the transport gave up, so that the next call connects
    again before it sends anything rather than after."""

    def __init__(self, inner: ReadStream[Item], on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Item:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        self._on_end()
        await self._inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class Link:
    """A connected client; ``dead`` once its connection is known to be closed."""

    def __init__(
        self, open_transport: OpenTransport, on_change: Callable[[], None], *, mode: str = "auto"
    ) -> None:
        self._open_transport = open_transport
        self._mode = mode
        self._on_change = on_change
        self._ready: asyncio.Future[Client] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.client: Client | None = None
        self.dead = False

    async def open(self) -> Client:
        """Connect (start the server process, or reach the URL) and finish the handshake."""
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._hold(self._ready), name="keel-mcp-link")
        try:
            self.client = await self._ready
        except BaseException:
            await self.close()
            raise
        return self.client

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[TransportStreams]:
        async with self._open_transport() as (read, write):
            yield _WatchedRead(read, self._ended), write

    def _ended(self) -> None:
        self.dead = True

    async def _message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._on_change()

    async def _hold(self, ready: asyncio.Future[Client]) -> None:
        try:
            client = Client(
                self._transport(), message_handler=self._message, cache=None, mode=self._mode
            )
            async with client:
                if not ready.done():
                    ready.set_result(client)
                listener = None
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    listener = asyncio.create_task(self._listen(client), name="keel-mcp-listen")
                try:
                    await self._stop.wait()
                finally:
                    if listener is not None:
                        listener.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await listener
        except Exception as exc:  # noqa: BLE001 - a connection's end is reported, not raised
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.debug("MCP connection closed with %s", type(exc).__name__)
        finally:
            self.dead = True
            if not ready.done():  # cancelled before the handshake ended
                ready.set_exception(ConnectionError("the connection was closed while opening"))

    async def _listen(self, client: Client) -> None:
        """Wake ``on_change`` on each tools change event, while the connection lasts."""
        capabilities = client.server_capabilities.tools
        if capabilities is None or not capabilities.list_changed:
            return
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    self._on_change()
        except (ListenNotSupportedError, Exception) as exc:  # noqa: BLE001 - best effort
            log.debug("MCP change stream ended: %s", type(exc).__name__)

    async def close(self) -> None:
        """Leave the client (stopping a server process it started); never raises."""
        self.dead = True
        self._stop.set()
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), _CLOSE_TIMEOUT_S)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

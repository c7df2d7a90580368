"""What the server's handlers share: the runtime, its agents, the keys, the settings, the
intake and whether the process is draining. One per app, made when the app starts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from starlette.requests import HTTPConnection

from keel._agent import Agent
from keel._runtime.runtime import Runtime
from keel._runtime.worker import Worker
from keel.observability import Metrics, Probe
from keel.server._errors import ApiError
from keel.server._intake import Intake
from keel.server._keys import KeyStore
from keel.server._settings import ServerSettings

__all__ = ["ServerState", "request_state", "server_state"]

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class ServerState:
    """The shared parts of one running app."""

    settings: ServerSettings
    runtime: Runtime
    agents: dict[str, Agent[Any]]
    keys: KeyStore
    intake: Intake
    metrics: Metrics | None = None
    probes: dict[str, list[Probe]] = field(default_factory=dict)
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    worker: Worker | None = None
    worker_task: asyncio.Task[None] | None = None

    def agent(self, name: str) -> Agent[Any]:
        """The agent called ``name``; 404 listing the agents served when there is none."""
        found = self.agents.get(name)
        if found is None:
            served = ", ".join(sorted(self.agents)) or "none"
            raise ApiError(
                404,
                "agent_not_found",
                f"there is no agent '{name}'; this server serves: {served}",
                field="agent",
                extra={"agents": sorted(self.agents)},
            )
        return found

    def drain(self) -> None:
        """Stop taking new work: new requests get 503, waits and streams end, and the
        inline worker stops claiming (the runs it drives get ``grace_s`` to finish, then go
        back to the store for another worker)."""
        self.draining.set()
        if self.worker is not None:
            self.worker.stop()

    async def unless_draining(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, or ``None`` if the process starts draining first (``work`` is
        then cancelled: what it waited for goes on without it)."""
        task = asyncio.ensure_future(work)
        drained = asyncio.ensure_future(self.draining.wait())
        try:
            await asyncio.wait({task, drained}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drained.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            return None
        return task.result()


def server_state(connection: HTTPConnection) -> ServerState:
    """The state of the app serving ``connection`` (a request or a WebSocket)."""
    state: ServerState = connection.app.state.keel
    return state


async def request_state(request: Request) -> ServerState:
    """:func:`server_state` as a FastAPI dependency of HTTP routes (``async``: FastAPI runs a
    plain function dependency on a worker thread, a hop per request)."""
    return server_state(request)

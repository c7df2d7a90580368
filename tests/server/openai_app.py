"""Serving the OpenAI-compatible endpoint for tests: a bare FastAPI app with the router, run
by uvicorn on a free loopback port in a thread (and an event loop) of its own.

The test talks to it over real HTTP, with the official ``openai`` package; what must happen
on the server's side (a person's decision, reading the journal) goes through :meth:`call`,
which runs a coroutine on the server's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import openai
import uvicorn
from fastapi import FastAPI, Header, HTTPException

from keel import Agent, Runtime
from keel.server._openai import openai_router

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Member:
    """A caller as a test's authentication knows it."""

    tenant: str | None
    user: str | None
    roles: tuple[str, ...] = ()


def bearer_keys(keys: Mapping[str, Member]) -> Callable[..., Member]:
    """A caller dependency: the API key the openai package sends as a bearer token names the
    caller; any other key is a 401."""

    def authenticated(authorization: Annotated[str | None, Header()] = None) -> Member:
        token = (authorization or "").removeprefix("Bearer ")
        member = keys.get(token)
        if member is None:
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        return member

    return authenticated


class ServedApp:
    """``app`` (any ASGI app) served by uvicorn on ``127.0.0.1`` until :meth:`stop`.

    The socket is bound and listening before the thread starts, so a request made at once
    waits in the backlog rather than failing.
    """

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            loop="asyncio",
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="uvicorn", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """Where an OpenAI client points: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        finally:
            # Runs still driven in the background end with the loop, as in a server that
            # stops; the journal keeps them.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        self._thread.join()
        self._socket.close()


@contextlib.contextmanager
def serve_openai(
    runtime: Runtime,
    *,
    caller: Callable[..., Any] | None = None,
    agents: Mapping[str, Agent[Any]] | None = None,
    wrap: Callable[[FastAPI], Any] | None = None,
) -> Iterator[ServedApp]:
    """The OpenAI-compatible router of ``runtime`` on a bare app (wrapped by ``wrap``),
    served until the block ends; the runtime is closed on the server's loop then."""
    app = FastAPI()
    app.include_router(openai_router(runtime, caller=caller, agents=agents))
    served = ServedApp(app if wrap is None else wrap(app))
    try:
        yield served
    finally:
        try:
            served.call(runtime.close())
        finally:
            served.stop()


def client(served: ServedApp, *, api_key: str = "test-key", max_retries: int = 0) -> openai.OpenAI:
    """The official client, pointed at the served app; without retries by default, so a test
    sees every answer the server gives."""
    return openai.OpenAI(base_url=served.base_url, api_key=api_key, max_retries=max_retries)


class CountsAnswers:
    """An ASGI wrapper that counts the requests the app has finished with, including a
    stream the client left: once counted, the app's part in the request is over."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._done = threading.Condition()
        self._answered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                with self._done:
                    self._answered += 1
                    self._done.notify_all()

    def wait_for(self, answered: int) -> None:
        """Block until the app has finished with ``answered`` requests."""
        with self._done:
            self._done.wait_for(lambda: self._answered >= answered)

"""Running the app on uvicorn until SIGTERM or Ctrl-C, then draining and exiting 0.

Uvicorn's own signal handling waits for open connections and re-raises the signal once it has
shut down (so the process dies of it). Here the first SIGTERM or SIGINT starts the drain at
once (new requests get 503, waits and streams end, the inline worker stops claiming) and
uvicorn's graceful shutdown follows; the process then exits normally. A second Ctrl-C forces
the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI

from keel.server._settings import ServerSettings
from keel.server._state import ServerState

__all__ = ["DrainingServer", "serve"]


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first signal drains the app (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, *, on_signal: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_signal = on_signal

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Handle SIGINT and SIGTERM on the event loop, and leave them handled: the drain is
        the way out, not dying of the signal afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._signalled, signum)
        try:
            yield
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _signalled(self, signum: int) -> None:
        if self.should_exit and signum == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True
        self._on_signal()


def serve(app: FastAPI, settings: ServerSettings) -> None:
    """Serve ``app`` on ``settings.host``/``port`` until a signal, then drain and return."""

    def drain() -> None:
        state: ServerState | None = getattr(app.state, "keel", None)
        if state is not None:
            state.drain()

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        lifespan="on",
        # Waits, streams and sockets end as the drain starts; what is left finishes here.
        timeout_graceful_shutdown=max(1, round(settings.grace_s)),
    )
    DrainingServer(config, on_signal=drain).run()

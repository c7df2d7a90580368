"""The life of an intake, whatever its transport: start, serve, stop; the handlers under way;
and the in-process worker that drives the accepted runs (``drive=True``)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

from keel import Runtime, UsageError, Worker
from keel.intake._accepting import Acceptance, IntakeCounts, IntakeOptions, describe, log

__all__ = ["BaseIntake"]

# How long handlers under way may finish after stop() before they are cancelled: a handler
# waits for one submit (a backoff ends early on stop); a cancelled one leaves its message
# unacknowledged, and the broker delivers it again.
_GRACE_S = 10.0


class BaseIntake(abc.ABC):
    """Starts and stops a transport's consumers and the worker, and keeps their tasks."""

    def __init__(self, runtime: Runtime, options: IntakeOptions) -> None:
        if not isinstance(runtime, Runtime):
            raise UsageError(f"an intake needs a keel.Runtime, got {type(runtime).__name__}")
        self.runtime = runtime
        self.options = options
        self._stop_requested = asyncio.Event()
        self._acceptance = Acceptance(runtime, options, stopping=self._stop_requested)
        # Handlers of run messages finish their message on stop; reply watchers only wait, so
        # they are cancelled at once (their record goes back to the outbox).
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchers: set[asyncio.Task[Any]] = set()
        self._worker: Worker | None = None
        self._working: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False

    @property
    def counts(self) -> IntakeCounts:
        """What this intake has done since it started."""
        return self._acceptance.counts

    async def start(self) -> None:
        """Connect, declare what the intake needs, start consuming (and, with ``drive``, the
        worker). Returns once messages are being received."""
        if self._started:
            raise UsageError("this intake was started already; make a new one to start again")
        self._started = True
        try:
            await self._open()
        except BaseException:
            await self._close()
            raise
        if self.options.drive:
            self._worker = self.runtime.worker(concurrency=self.options.concurrency)
            self._working = asyncio.create_task(
                self._drive(self._worker), name="keel-intake-worker"
            )

    async def stop(self) -> None:
        """Stop receiving, let the handlers under way finish (unacknowledged messages go back
        to the broker), stop the worker, and disconnect. Safe to call twice."""
        self._stop_requested.set()
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(Exception):
            await self._stop_receiving()
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._worker is not None and self._working is not None:
            self._worker.stop()
            await asyncio.gather(self._working, return_exceptions=True)
        await self._close()

    async def _drive(self, worker: Worker) -> None:
        """Run the worker until stopped; one that fails (the store down while it claims) is
        started again after a pause, rather than leaving accepted runs undriven."""
        while True:
            try:
                await worker.run()
                return
            except Exception as exc:  # noqa: BLE001 - logged; the worker goes on
                log.error("intake: the worker failed (%s); it starts again", describe(exc))
            await self._acceptance.pause(1)
            if self._stop_requested.is_set():
                return

    def stop_soon(self) -> None:
        """Have :meth:`run` stop (from a signal handler, or code without a loop at hand)."""
        self._stop_requested.set()

    async def run(self) -> None:
        """:meth:`start` (unless started), serve until :meth:`stop` or :meth:`stop_soon` (or
        until this task is cancelled), then stop."""
        if not self._started:
            await self.start()
        try:
            await self._stop_requested.wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str, *, watcher: bool = False) -> None:
        """Run a handler (or, with ``watcher``, a reply watcher) in a task of its own, kept
        until it ends; its errors are logged."""
        task = asyncio.create_task(self._logged(work), name=name)
        kept = self._watchers if watcher else self._tasks
        kept.add(task)
        task.add_done_callback(kept.discard)

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one message must not stop the intake
            log.error("a message handler failed: %s", describe(exc))

    @abc.abstractmethod
    async def _open(self) -> None:
        """Connect and start consuming."""

    @abc.abstractmethod
    async def _stop_receiving(self) -> None:
        """Stop taking new messages (consumers cancelled)."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Disconnect (safe whatever ``_open`` got to)."""

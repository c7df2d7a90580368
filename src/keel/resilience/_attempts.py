"""What the resilience wrappers share: the ``Sleeper`` type, attempt bookkeeping, closing a
model's stream, and a time limit driven by the injected sleep (so that tests on a fake clock
cover timeouts without waiting)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

from keel._core.messages import Attempt, ModelResponse, StreamEvent
from keel.errors import ModelError

__all__ = [
    "Sleeper",
    "aclose_stream",
    "attempts_from_error",
    "attempts_from_response",
    "ms",
    "time_limit",
]

Sleeper = Callable[[float], Awaitable[object]]
"""An async function that waits the given number of seconds, like :func:`asyncio.sleep`.

Inject one that advances a :class:`keel.testing.FakeClock` to test backoff, timeouts and
cooldowns in microseconds.
"""


async def aclose_stream(events: AsyncIterator[StreamEvent]) -> None:
    """Close a model's event stream (an async generator) if it can be closed."""
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


def ms(seconds: float) -> float:
    """Seconds as milliseconds."""
    return seconds * 1000.0


def _with_wait(attempts: tuple[Attempt, ...], waited_ms: float) -> tuple[Attempt, ...]:
    if not waited_ms or not attempts:
        return attempts
    first = attempts[0]
    return (replace(first, waited_ms=first.waited_ms + waited_ms), *attempts[1:])


def attempts_from_error(
    error: ModelError, *, model: str, latency_ms: float, waited_ms: float = 0.0
) -> tuple[Attempt, ...]:
    """The attempts one failed try stands for.

    An error that already carries attempts (it came through another wrapper: a fallback, a
    breaker that skipped the call) keeps them, with ``waited_ms`` added to the first; otherwise
    the try is one attempt of ``model``. Errors are expected to be raised afresh for each
    failure, as providers do: an error instance raised again after a wrapper gave up with it
    still carries the attempts of that earlier call.
    """
    if error.attempts:
        return _with_wait(error.attempts, waited_ms)
    return (
        Attempt(
            model=model,
            code=error.code,
            message=error.message,
            latency_ms=latency_ms,
            waited_ms=waited_ms,
        ),
    )


def attempts_from_response(
    response: ModelResponse, *, model: str, latency_ms: float, waited_ms: float = 0.0
) -> tuple[Attempt, ...]:
    """The attempts one successful try stands for (see :func:`attempts_from_error`)."""
    if response.attempts:
        return _with_wait(response.attempts, waited_ms)
    return (Attempt(model=model, latency_ms=latency_ms, waited_ms=waited_ms),)


@asynccontextmanager
async def time_limit(seconds: float | None, sleep: Sleeper) -> AsyncIterator[None]:
    """Cancel the body after ``seconds`` (measured by ``sleep``) and raise ``TimeoutError``.

    This is :func:`asyncio.timeout` with the waiting done by an injected sleeper: a watchdog
    task sleeps, then cancels the task running the body. With the real ``asyncio.sleep`` it
    behaves like ``asyncio.timeout``; with a sleeper that advances a fake clock, a body that
    hangs times out at once and the fake clock shows the limit passed. A cancellation from
    outside still propagates as ``CancelledError``. ``None`` means no limit.
    """
    if seconds is None:
        yield
        return
    task = asyncio.current_task()
    assert task is not None, "time_limit must run inside a task"
    cancelling = task.cancelling()
    state = {"active": True, "fired": False}

    def fire(watchdog: asyncio.Future[object]) -> None:
        if watchdog.cancelled() or watchdog.exception() is not None or not state["active"]:
            return
        state["fired"] = True
        task.cancel()

    watchdog: asyncio.Future[object] = asyncio.ensure_future(sleep(max(0.0, seconds)))
    watchdog.add_done_callback(fire)
    try:
        yield
    except asyncio.CancelledError:
        if state["fired"] and task.uncancel() <= cancelling:
            raise TimeoutError from None
        raise
    finally:
        state["active"] = False
        watchdog.remove_done_callback(fire)
        if not watchdog.done():
            watchdog.cancel()

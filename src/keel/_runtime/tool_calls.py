"""Running one validated tool call: timeouts, threads for sync tools, errors as results.

Every outcome becomes a result the model can read, except one: a call of a tool that is not
safe to repeat that passes its timeout. Its effect is in doubt (a sync tool's thread goes on
running; an async tool may have acted before it was cancelled), so the outcome says
``timed_out`` and the runtime asks a person instead of telling the model to try again.

Async tools are cancelled at their timeout. Sync tools run in a fresh daemon thread: Python
cannot stop a thread, so at the timeout the call is abandoned and the thread is left to finish
on its own. A daemon thread (rather than a pool's) is what makes that safe: a hung tool never
keeps the process from exiting, and never occupies a pool slot other runs need.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pydantic_core import PydanticSerializationError, to_json

from keel._core.delegation import ChildRun
from keel._core.events import ErrorInfo
from keel._runtime.deadline import Deadline
from keel._tools import RunContext, Tool, ToolError

__all__ = [
    "ToolEffectInDoubt",
    "ToolExecutor",
    "ToolOutcome",
    "cap_result",
    "execute_tool",
    "render_result",
]

_MESSAGE_LIMIT = 2000
_RETRY_BACKOFF_S = 0.05


class ToolEffectInDoubt(Exception):  # noqa: N818 - a signal, like TimeoutError, not a bug
    """Raised by a tool whose request went out but whose answer was lost (the connection to
    the service doing the work broke mid-call): the effect may or may not have happened.

    A tool that is safe to repeat is retried (when it has retries) like after any exception;
    for one that is not, the call is in doubt, exactly as at a timeout: a person is asked.
    """


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a call produced: the text the model sees, the error if it failed, how many tries
    it took, and whether the last one passed its timeout."""

    result: str
    error: ErrorInfo | None = None
    attempts: int = 1
    timed_out: bool = False
    #: Set when ``result`` was already cut: the full result's length.
    result_chars: int | None = None
    #: The child runs the call started (delegation), and the one it waits for, with why.
    children: tuple[ChildRun, ...] = ()
    waiting: tuple[ChildRun, str] | None = None


class ToolExecutor(Protocol):
    """Runs one validated call; :func:`execute_tool` is the real one, replay has another."""

    async def __call__(
        self,
        tool: Tool,
        context: RunContext[Any],
        arguments: dict[str, Any],
        *,
        timeout_s: float,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> ToolOutcome: ...


def render_result(value: Any) -> str:
    """A tool's return value as the text the model reads: str as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return to_json(value).decode()


def cap_result(text: str, limit: int) -> tuple[str, int | None]:
    """``text`` cut to ``limit`` characters with a note saying so, and its full length (or
    ``None`` when it was not cut)."""
    if len(text) <= limit:
        return text, None
    note = f"\n[result cut: it had {len(text):,} characters; only the first {limit:,} are shown]"
    return text[:limit] + note, len(text)


def _failure(code: str, message: str) -> ToolOutcome:
    message = message if len(message) <= _MESSAGE_LIMIT else message[:_MESSAGE_LIMIT] + "..."
    return ToolOutcome(result=f"Error: {message}", error=ErrorInfo(code=code, message=message))


async def _in_daemon_thread(function: Callable[[], Any]) -> Any:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    # The tool sees the caller's context variables (e.g. the current trace span), as it
    # would with asyncio.to_thread.
    context = contextvars.copy_context()

    def deliver(ok: bool, value: Any) -> None:
        if future.done():  # abandoned at its timeout, or the run was cancelled
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            outcome: tuple[bool, Any] = (True, context.run(function))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine as is
            outcome = (False, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed while the tool ran
            loop.call_soon_threadsafe(deliver, *outcome)

    threading.Thread(target=work, name="keel-tool", daemon=True).start()
    return await future


async def execute_tool(
    tool: Tool,
    context: RunContext[Any],
    arguments: dict[str, Any],
    *,
    timeout_s: float,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> ToolOutcome:
    """Run ``tool`` with validated ``arguments``; never raises for a tool's failure.

    A call that raises or times out is tried again ``tool.spec.retries`` times (only tools
    that are safe to repeat have retries), after a short jittered backoff waited with
    ``sleep`` (the runtime's clock). Cancellation of the caller propagates (the run is being
    stopped); everything else, from a ``ToolError`` to a timeout to an unserializable return
    value, becomes a :class:`ToolOutcome` with an error.
    """
    attempts = 1 + tool.spec.retries
    for attempt in range(1, attempts + 1):
        outcome, retryable = await _run_once(tool, context, arguments, timeout_s=timeout_s)
        if not retryable or attempt == attempts:
            return outcome if attempt == 1 else replace(outcome, attempts=attempt)
        await sleep(random.uniform(0, _RETRY_BACKOFF_S * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # pragma: no cover


async def _run_once(
    tool: Tool, context: RunContext[Any], arguments: dict[str, Any], *, timeout_s: float
) -> tuple[ToolOutcome, bool]:
    """One try; the flag says whether trying again could help (exceptions and timeouts)."""
    name = tool.name
    call = tool.bind(context, arguments)
    deadline = Deadline(timeout_s)
    try:
        async with deadline:
            value = await call() if tool.is_async else await _in_daemon_thread(call)
    except ToolError as exc:
        return _failure("tool_error", exc.message), False
    except ToolEffectInDoubt as exc:
        if tool.spec.safe_to_repeat:
            return _failure("tool_exception", f"tool '{name}' was interrupted: {exc}"), True
        message = (
            f"tool '{name}' was interrupted ({exc}); it is not safe to repeat, so whether its "
            "effect happened is in doubt"
        )
        return replace(_failure("tool_interrupted", message), timed_out=True), False
    except TimeoutError as exc:
        if not deadline.expired():  # the tool's own TimeoutError, not our deadline
            return _failure("tool_exception", f"tool '{name}' raised TimeoutError: {exc}"), True
        if not tool.spec.safe_to_repeat:
            # Its effect is in doubt: not a result for the model, a question for a person.
            message = (
                f"tool '{name}' did not finish within {timeout_s:g}s; it is not safe to "
                "repeat, so whether its effect happened is in doubt"
            )
            return replace(_failure("tool_timeout", message), timed_out=True), False
        return _failure(
            "tool_timeout",
            f"tool '{name}' did not finish within {timeout_s:g}s and was stopped; "
            "try again later or with a smaller request",
        ), True
    except Exception as exc:  # noqa: BLE001 - any tool failure is reported to the model
        message = f"tool '{name}' raised {type(exc).__name__}: {exc}"
        return _failure("tool_exception", message), True
    try:
        return ToolOutcome(result=render_result(value)), False
    except PydanticSerializationError as exc:
        return _failure(
            "tool_result_invalid",
            f"tool '{name}' returned a {type(value).__name__} that cannot be sent to the model "
            f"as JSON ({exc}); return a str, dict, list, dataclass or pydantic model",
        ), False

"""Streaming a run's answer as it is written.

The run is accepted into the queue (``Runtime.submit``), followed with its text deltas
(``Runtime.events(run_id, deltas=True)``), and only then driven here
(``Runtime.resume``): deltas reach the followers that follow already, and the driver asks
the model to stream only when someone does. Each step's text is checked against the answer
the journal keeps for that step (``ModelResponded``), so text a follower did not get (a
driver in another process, deltas published too late) is sent from the journal, and text
that is not the answer's (a failed attempt's) is not sent.

The driving is a task of its own: a client that goes away stops being sent text, not the
run, which finishes and is journaled like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass
from typing import Any

from keel._agent import Agent
from keel._core.events import ModelResponded
from keel._runtime.result import RunResult
from keel._runtime.runtime import Runtime
from keel._runtime.stream import RunDelta, RunEvent
from keel.errors import LeaseLostError, RunLeasedError
from keel.server._openai_errors import NO_RETRY, OpenAIError
from keel.server._openai_replies import is_text_agent

__all__ = ["AnswerText", "Background", "Stopped", "Text", "answer_pieces"]

# Between the text of two steps (what the model said before calling tools, then its answer).
_STEP_BREAK = "\n\n"


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of the answer, to send as it is."""

    text: str


@dataclass(frozen=True, slots=True)
class Stopped:
    """The run stopped: completed, or not (see its status)."""

    result: RunResult[Any]


@dataclass(frozen=True, slots=True)
class _Ended:
    """Following ended: the run stopped (``error`` is ``None``), or it cannot be followed."""

    error: BaseException | None = None


class Background:
    """The runs this endpoint drives, kept referenced until they end: a task nobody holds
    may be collected mid-run."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` to its end, whoever waits for it."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class AnswerText:
    """Turns deltas and journaled answers into the pieces a client has not been sent yet.

    A step's deltas usually come before the journaled answer they belong to, but not always:
    those published while the follower reads the journal come after that read's events, and
    those of the run's last read do not come at all. So a journaled answer is held as what
    the step said, the deltas that continue it are still sent as they come, and whatever of
    it no delta brought is sent once a later step speaks or the run stops. A delta that does
    not continue the journaled answer (an attempt that failed and was retried) is dropped.
    """

    def __init__(self, *, streams: bool) -> None:
        self._streams = streams
        self._sent: dict[int, str] = {}
        self._said: dict[int, str] = {}
        self._closed: set[int] = set()

    def pieces(self, item: RunEvent | RunDelta) -> list[Text]:
        """What to send for a delta or an event of the run (often nothing)."""
        if not self._streams:  # a structured answer is sent whole, once validated
            return []
        if isinstance(item, RunDelta):
            return [*self._close_before(item.step), *self._delta(item.step, item.text)]
        event = item.event
        if not isinstance(event, ModelResponded):
            return []
        pieces = self._close_before(event.step)
        self._said[event.step] = event.message.content or ""
        return pieces

    def rest(self) -> list[Text]:
        """What the journal says was said and was not sent: the run stopped."""
        return self._close_before(None)

    def _delta(self, step: int, text: str) -> list[Text]:
        if step in self._closed:
            return []
        said = self._said.get(step)
        if said is not None and not said.startswith(self._sent.get(step, "") + text):
            return []
        return self._send(step, text)

    def _close_before(self, step: int | None) -> list[Text]:
        pieces: list[Text] = []
        for earlier in sorted(self._said):
            if step is not None and earlier >= step:
                break
            said = self._said.pop(earlier)
            sent = self._sent.get(earlier, "")
            if said.startswith(sent):
                pieces += self._send(earlier, said[len(sent) :])
            self._closed.add(earlier)
        return pieces

    def _send(self, step: int, text: str) -> list[Text]:
        if not text:
            return []
        first_of_step = step not in self._sent
        self._sent[step] = self._sent.get(step, "") + text
        if first_of_step and len(self._sent) > 1:  # an earlier step said something
            text = _STEP_BREAK + text
        return [Text(text)]


def _unavailable(run_id: str, error: BaseException) -> OpenAIError:
    # The class only: a store's message may name where it lives.
    return OpenAIError(
        503,
        f"Run {run_id} could not be followed or driven ({type(error).__name__}); it is "
        "journaled and continues once the runtime recovers it.",
        kind="server_error",
        code="run_unavailable",
        headers={"x-keel-run-id": run_id, **NO_RETRY},
    )


async def _follow(runtime: Runtime, run_id: str, items: asyncio.Queue[Any]) -> None:
    try:
        async for item in runtime.events(run_id, deltas=True):
            items.put_nowait(item)
    except Exception as error:  # noqa: BLE001 - handed to the reader, which answers with it
        items.put_nowait(_Ended(error))
    else:
        items.put_nowait(_Ended())


def _on_driven(items: asyncio.Queue[Any], task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    # Another process drives the run (or took it over): following shows where it goes.
    if error is not None and not isinstance(error, RunLeasedError | LeaseLostError):
        items.put_nowait(_Ended(error))


async def answer_pieces(
    runtime: Runtime, agent: Agent[Any], run_id: str, *, background: Background
) -> AsyncGenerator[Text | Stopped, None]:
    """Drive the queued run ``run_id`` and yield its answer's text as it is written, then
    where the run stopped. Raises :class:`OpenAIError` (503) if the run cannot be followed
    or driven."""
    items: asyncio.Queue[Any] = asyncio.Queue()
    follower = asyncio.create_task(_follow(runtime, run_id, items))
    try:
        item = await items.get()
        # The follower is registered once it has read the first event: drive from now on.
        if not isinstance(item, _Ended):
            driver = background.spawn(runtime.resume(run_id, agent))
            driver.add_done_callback(lambda task: _on_driven(items, task))
        texts = AnswerText(streams=is_text_agent(agent))
        while not isinstance(item, _Ended):
            for piece in texts.pieces(item):
                yield piece
            item = await items.get()
        if item.error is not None:
            raise _unavailable(run_id, item.error)
        for piece in texts.rest():
            yield piece
        yield Stopped(await runtime.result(run_id, agent))
    finally:
        # Not awaited: this runs when a client went away, in a cancelled scope.
        follower.cancel()

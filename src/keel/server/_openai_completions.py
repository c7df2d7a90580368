"""Answering a chat completion request with a run of the agent it names.

Without streaming, the run is started and driven inline (``Runtime.run``); with streaming,
it is accepted into the queue, followed and driven here (:mod:`keel.server._openai_stream`).
Either way a thread holds one run at a time: a message for a thread whose earlier run has not
ended is refused (409 ``thread_busy``), not queued, since an HTTP request cannot wait for a
person's decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.responses import Response

from keel._agent import Agent
from keel._runtime.runtime import Runtime
from keel.errors import ConfigurationError, KeelError, StoreError, ThreadBusyError, UsageError
from keel.server._openai_caller import Caller
from keel.server._openai_errors import NO_RETRY, OpenAIError, invalid_request, run_not_answered
from keel.server._openai_replies import Reply, answer_text
from keel.server._openai_sse import sse_events
from keel.server._openai_stream import Background, Stopped, answer_pieces

__all__ = ["Ask", "Completions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ask:
    """One request, read: which agent, the run's input, the conversation, who asks."""

    agent: Agent[Any]
    model: str
    input: str
    #: The client's name for the conversation, and the Keel thread it is for this caller.
    thread: str | None
    keel_thread: str | None
    caller: Caller
    include_usage: bool = False


def _busy(thread: str | None, run_id: str, status: str) -> OpenAIError:
    return OpenAIError(
        409,
        f"Thread '{thread}' is busy: its run {run_id} is {status}. Send the next message "
        "once it has answered (a run that waits for a person answers after the decision).",
        kind="conflict_error",
        param="thread",
        code="thread_busy",
        headers={"x-keel-run-id": run_id, **NO_RETRY},
    )


def keel_error(error: KeelError, *, thread: str | None) -> OpenAIError:
    """The answer to an error the runtime raised for a request (others are raised on)."""
    if isinstance(error, ThreadBusyError):
        return _busy(thread, error.active_run_id, error.status)
    if isinstance(error, ConfigurationError):
        # The operator's to fix (a model's key is missing): the message says what, no value.
        return OpenAIError(
            503, str(error), kind="server_error", code="agent_unavailable", headers=NO_RETRY
        )
    if isinstance(error, UsageError):
        return invalid_request(str(error), param=None)
    if isinstance(error, StoreError):
        # The class only: a store's message may name where it lives.
        return OpenAIError(
            503,
            f"The runtime's store is unavailable ({type(error).__name__}).",
            kind="server_error",
            code="store_unavailable",
        )
    raise error  # not an error a request causes: the server's own handler reports it


def _roles(caller: Caller) -> Sequence[str]:
    return tuple(caller.roles)


class Completions:
    """Runs agents for chat completion requests, streamed or not."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.background = Background()

    async def answer(self, ask: Ask) -> Response:
        """Run the agent inline and answer with its completion."""
        created = int(self.runtime.clock.now())
        try:
            result = await self.runtime.run(
                ask.agent,
                ask.input,
                thread=ask.keel_thread,
                if_busy="reject",
                tenant=ask.caller.tenant,
                user=ask.caller.user,
                roles=_roles(ask.caller),
            )
        except KeelError as error:
            raise keel_error(error, thread=ask.thread) from error
        if not result.ok:
            raise run_not_answered(result, thread=ask.thread)
        reply = Reply(run_id=result.run_id, created=created, model=ask.model)
        body = reply.completion(answer_text(ask.agent, result), result.usage)
        return JSONResponse(body.model_dump(), headers={"x-keel-run-id": result.run_id})

    async def _refuse_if_busy(self, ask: Ask, *, ours: str | None) -> None:
        """409 if another run holds the thread; ``ours``, already queued, is withdrawn."""
        if ask.keel_thread is None:
            return
        holder = await self.runtime.store.active_run(ask.keel_thread)
        if holder is None or holder.run_id == ours:
            return
        if ours is not None:  # another message of the thread came first, by a hair
            await self.runtime.cancel(ours, reason=f"withdrawn: run {holder.run_id} came first")
        raise _busy(ask.thread, holder.run_id, holder.status)

    async def stream(self, ask: Ask) -> Response:
        """Run the agent and answer with its completion as server-sent events.

        The status line waits for the first piece of the answer: a run that stops without
        one (it waits for a person, a check refused it) is answered with an error status,
        as without streaming.
        """
        created = int(self.runtime.clock.now())
        try:
            await self._refuse_if_busy(ask, ours=None)
            run_id = await self.runtime.submit(
                ask.agent,
                ask.input,
                thread=ask.keel_thread,
                tenant=ask.caller.tenant,
                user=ask.caller.user,
                roles=_roles(ask.caller),
            )
            await self._refuse_if_busy(ask, ours=run_id)
        except KeelError as error:
            raise keel_error(error, thread=ask.thread) from error
        pieces = answer_pieces(self.runtime, ask.agent, run_id, background=self.background)
        first = await anext(pieces)
        if isinstance(first, Stopped) and not first.result.ok:
            await pieces.aclose()
            raise run_not_answered(first.result, thread=ask.thread)
        reply = Reply(run_id=run_id, created=created, model=ask.model)
        events = sse_events(
            first,
            pieces,
            agent=ask.agent,
            reply=reply,
            include_usage=ask.include_usage,
            thread=ask.thread,
        )
        headers = {
            "x-keel-run-id": run_id,
            "cache-control": "no-cache",
            "x-accel-buffering": "no",  # a proxy that buffers would hold the text back
        }
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

"""Agents the server tests serve: offline, deterministic, and each showing one behaviour.

Also an app for ``keel serve`` / ``keel worker`` subprocesses: every agent here is served.
``gated`` waits, in its model call, until the file named by ``KEEL_TEST_GATE`` exists (or the
:data:`GATES` event of its name is set, in-process): the test decides when a run may finish.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from keel import Agent, Model, tool
from keel.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from keel.testing import FunctionModel, call

__all__ = ["GATES", "GATE_ENV", "agents", "desk", "echo", "gated", "typist"]

GATE_ENV = "KEEL_TEST_GATE"
#: In-process gates of the ``gated`` agent, by the text of the run's input.
GATES: dict[str, threading.Event] = {}


def _echo(request: ModelRequest) -> str:
    users = [m.content for m in request.messages if isinstance(m, UserMessage)]
    return "Seen: " + " | ".join(users)


echo = Agent(name="echo", model=FunctionModel(_echo))
"""Answers with every user message of its thread, oldest first."""


@tool(requires_approval=True)
def refund(amount_usd: float) -> str:
    """Refund the customer.

    Args:
        amount_usd: How much, in US dollars.
    """
    return f"refunded ${amount_usd:g}"


def _desk(request: ModelRequest) -> str | ToolCall:
    last = request.messages[-1]
    if isinstance(last, ToolResultMessage):
        return f"Done: {last.content}."
    assert isinstance(last, UserMessage)
    if "refund" in last.content:
        return call("refund", amount_usd=120)
    return "How can I help?"


desk = Agent(name="desk", model=FunctionModel(_desk), tools=[refund])
"""Asks for a refund (which waits for approval) when the message says ``refund``."""


def _gate_open(text: str) -> bool:
    event = GATES.get(text)
    if event is not None:
        return event.is_set()
    gate_file = os.environ.get(GATE_ENV)
    return gate_file is None or Path(gate_file).exists()


async def _gated(request: ModelRequest) -> str:
    text = next(m.content for m in request.messages if isinstance(m, UserMessage))
    # The gate is a file another process writes, or an event another thread sets: polled.
    while not _gate_open(text):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return f"through: {text}"


gated = Agent(name="gated", model=FunctionModel(_gated, name="gated-model"))
"""Answers once its gate opens (see the module docstring)."""


class _Typist(Model):
    """Streams "Hello there." in three pieces."""

    pieces = ("Hel", "lo ", "there.")

    @property
    def name(self) -> str:
        return "typist"

    async def request(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(message=AssistantMessage(content="".join(self.pieces)))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        for piece in self.pieces:
            yield TextDelta(text=piece)
        yield StreamComplete(response=await self.request(request))


typist = Agent(name="typist", model=_Typist())
"""Streams its answer in pieces."""

agents = [echo, desk, gated, typist]

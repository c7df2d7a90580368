"""The agents bench/server.py serves: three steps each (a lookup, a second lookup, the answer),
on offline models. ``fast`` answers at once; ``slow`` takes 200 ms per model call, like a
real provider; ``paced`` waits 20 ms in each tool, so that its events are spread in time."""

from __future__ import annotations

import asyncio

from keel import Agent, tool
from keel.messages import ModelRequest, ToolResultMessage
from keel.testing import FunctionModel, Scripted, call


@tool(side_effects="read")
async def lookup(order: str) -> str:
    """Look an order up."""
    return f"order {order}: shipped"


@tool(side_effects="read")
async def lookup_slowly(order: str) -> str:
    """Look an order up, taking 20 ms."""
    await asyncio.sleep(0.02)
    return f"order {order}: shipped"


def _plan(request: ModelRequest, tool_name: str) -> Scripted:
    done = sum(isinstance(m, ToolResultMessage) for m in request.messages)
    if done < 2:
        return call(tool_name, order=str(1000 + done))
    return "Both orders have shipped."


async def _slow(request: ModelRequest) -> Scripted:
    await asyncio.sleep(0.2)
    return _plan(request, "lookup")


fast = Agent(name="fast", model=FunctionModel(lambda r: _plan(r, "lookup")), tools=[lookup])
slow = Agent(name="slow", model=FunctionModel(_slow), tools=[lookup])
paced = Agent(
    name="paced", model=FunctionModel(lambda r: _plan(r, "lookup_slowly")), tools=[lookup_slowly]
)

"""An app for the delegation command-line tests: a ``desk`` agent that hands refunds to a
``refunds`` agent, whose refund tool needs a person's approval. The models decide from the
conversation, so every process plays the same script. Refunds are appended to the file
``KEEL_TEST_REFUNDS`` names: an effect outside the journal, counted by the test."""

from __future__ import annotations

import os
from pathlib import Path

from keel import Agent, tool
from keel.messages import ModelRequest, ToolResultMessage
from keel.testing import FunctionModel, Scripted, call


@tool(requires_approval=True)
def refund(order_id: str) -> str:
    """Refund an order (a person approves it first)."""
    with Path(os.environ["KEEL_TEST_REFUNDS"]).open("a") as refunds:
        refunds.write(f"{order_id}\n")
    return f"refunded order {order_id}"


def _results(request: ModelRequest) -> int:
    return sum(isinstance(m, ToolResultMessage) for m in request.messages)


def _refunds_model(request: ModelRequest) -> Scripted:
    return call("refund", order_id="1043") if _results(request) == 0 else "Refunded 1043."


def _desk_model(request: ModelRequest) -> Scripted:
    if _results(request) == 0:
        return call("refunds", input="Refund order 1043")
    return "Your refund is done."


refunds = Agent(name="refunds", model=FunctionModel(_refunds_model), tools=[refund])
desk = Agent(name="desk", model=FunctionModel(_desk_model), tools=[refunds.as_tool()])

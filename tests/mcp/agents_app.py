"""Agents that ``keel mcp`` serves in the tests: one answers, one needs an approval, one
fails."""

from __future__ import annotations

from keel import Agent, tool
from keel._core.messages import ModelRequest, UserMessage
from keel.errors import ModelHTTPError
from keel.testing import FunctionModel, Scripted, call


def _echo(request: ModelRequest) -> Scripted:
    return f"echo: {request.messages[-1].content}"


@tool(requires_approval=True)
def refund(amount: int) -> str:
    """Refund an amount."""
    return f"refunded {amount}"


def _refunds(request: ModelRequest) -> Scripted:
    if isinstance(request.messages[-1], UserMessage):
        return call("refund", amount=500)
    return "Refunded."


echo = Agent(name="echo", model=FunctionModel(_echo))
refunds = Agent(name="refunds", model=FunctionModel(_refunds), tools=[refund])


def _broken(request: ModelRequest) -> Scripted:
    return ModelHTTPError("the provider refused the request", status=400)


broken = Agent(name="broken", model=FunctionModel(_broken))

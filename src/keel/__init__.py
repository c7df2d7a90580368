"""Keel: a production runtime for AI agents.

::

    from keel import Agent, Runtime, tool

    @tool
    def lookup_order(order_id: str) -> dict[str, str]:
        \"\"\"Find an order by id.\"\"\"
        ...

    agent = Agent(name="support", instructions="...", model="rules", tools=[lookup_order])
    result = Runtime().run_sync(agent, "Where is order 123?", thread="customer-42")
"""

from keel._agent import Agent
from keel._core.events import ErrorInfo, RunStatus
from keel._core.limits import Limits
from keel._core.messages import ModelSettings
from keel._core.pricing import Price, PriceTable
from keel._core.usage import Usage
from keel._runtime.result import RunResult
from keel._runtime.runtime import Runtime
from keel._settings import KeelSettings
from keel._tools import RunContext, Tool, ToolError, tool
from keel.errors import (
    ConfigurationError,
    KeelError,
    ModelError,
    RunFailedError,
    RunNotFoundError,
    StoreError,
    ThreadBusyError,
    UsageError,
)
from keel.ports import Model

__all__ = [
    "Agent",
    "ConfigurationError",
    "ErrorInfo",
    "KeelError",
    "KeelSettings",
    "Limits",
    "Model",
    "ModelError",
    "ModelSettings",
    "Price",
    "PriceTable",
    "RunContext",
    "RunFailedError",
    "RunNotFoundError",
    "RunResult",
    "RunStatus",
    "Runtime",
    "StoreError",
    "ThreadBusyError",
    "Tool",
    "ToolError",
    "Usage",
    "UsageError",
    "tool",
]

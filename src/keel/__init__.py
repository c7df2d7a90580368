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

from keel.agent import Agent
from keel.core.events import ErrorInfo, RunStatus
from keel.core.limits import Limits
from keel.core.messages import ModelSettings
from keel.core.pricing import Price, PriceTable
from keel.core.usage import Usage
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
from keel.runtime.result import RunResult
from keel.runtime.runtime import Runtime
from keel.settings import KeelSettings
from keel.tools import RunContext, Tool, ToolError, tool

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

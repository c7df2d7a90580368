"""Keel: a production runtime for AI agents.

::

    from keel import Agent, Runtime, tool

    @tool
    def lookup_order(order_id: str) -> dict[str, str]:
        \"\"\"Find an order by id.\"\"\"
        ...

    agent = Agent(name="support", instructions="...", model="rules", tools=[lookup_order])
    result = Runtime().run_sync(agent, "Where is order 123?", thread="customer-42")

The documented submodules: :mod:`keel.events` (journal events), :mod:`keel.messages` (what
models are sent and answer), :mod:`keel.errors`, :mod:`keel.stores`, :mod:`keel.models`,
:mod:`keel.resilience`, :mod:`keel.testing` and :mod:`keel.ports`. Everything else is private.
"""

from keel._agent import Agent, ModelSpec
from keel._checks import Check, check
from keel._context import AgentContext, ToolSource
from keel._core.checks import CheckPoint, CheckRequest, CheckResult
from keel._core.events import ErrorInfo, PendingCall, RunStatus
from keel._core.history import History
from keel._core.limits import Limits
from keel._core.messages import ModelRequest, ModelResponse, ModelSettings
from keel._core.pricing import Price, PriceTable
from keel._core.steps import RunDiff, Step
from keel._core.usage import Usage
from keel._runtime.delegation import fan_out
from keel._runtime.result import RunResult
from keel._runtime.runtime import Runtime
from keel._runtime.runtime_delegation import ParentLink
from keel._runtime.stopping import Recovery, Skipped
from keel._runtime.stream import RunDelta, RunEvent
from keel._runtime.timetravel import Replay
from keel._runtime.worker import Worker
from keel._settings import KeelSettings
from keel._tools import RunContext, Tool, ToolError, tool
from keel.errors import (
    ConfigurationError,
    KeelError,
    LeaseLostError,
    ModelError,
    RunFailedError,
    RunLeasedError,
    RunNotCompletedError,
    RunNotFoundError,
    StoreError,
    ThreadBusyError,
    UsageError,
)
from keel.ports import Model, Store

__all__ = [
    "Agent",
    "AgentContext",
    "Check",
    "CheckPoint",
    "CheckRequest",
    "CheckResult",
    "ConfigurationError",
    "ErrorInfo",
    "History",
    "KeelError",
    "KeelSettings",
    "LeaseLostError",
    "Limits",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "ModelSpec",
    "ParentLink",
    "PendingCall",
    "Price",
    "PriceTable",
    "Recovery",
    "Replay",
    "RunContext",
    "RunDelta",
    "RunDiff",
    "RunEvent",
    "RunFailedError",
    "RunLeasedError",
    "RunNotCompletedError",
    "RunNotFoundError",
    "RunResult",
    "RunStatus",
    "Runtime",
    "Skipped",
    "Step",
    "Store",
    "StoreError",
    "ThreadBusyError",
    "Tool",
    "ToolError",
    "ToolSource",
    "Usage",
    "UsageError",
    "Worker",
    "check",
    "fan_out",
    "tool",
]

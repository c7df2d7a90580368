"""Keel agents as MCP tools: what ``keel mcp APP`` serves.

Each agent becomes one tool taking ``message`` (and an optional ``thread`` to continue a
conversation). Each call is a run of the agent on the runtime's store, journaled like any
other: it can be listed, replayed and audited afterwards. A run that stops for a person (an
approval, a call in doubt) or at a limit answers with a text that says so and names the run,
so the person can decide (``keel approve RUN_ID``) and the caller can look again later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mcp.server.mcpserver import MCPServer as ProtocolServer
from mcp.server.mcpserver.exceptions import ToolError as ProtocolToolError
from mcp_types import ToolAnnotations
from pydantic import Field
from pydantic_core import to_json

from keel._agent import Agent
from keel._runtime.result import RunResult
from keel._runtime.runtime import Runtime
from keel.errors import KeelError

__all__ = ["agent_server", "answer_text"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def answer_text(result: RunResult[Any]) -> str:
    """What the MCP caller reads of a run that did not fail: its answer, or why it waits."""
    if result.status == "completed":
        output = result.final_output
        return output if isinstance(output, str) else to_json(output).decode()
    if result.status == "awaiting_approval":
        calls = ", ".join(f"{p.call.name} ({p.kind})" for p in result.pending) or "a decision"
        return (
            f"Run {result.run_id} is waiting for a person to decide on {calls}. It continues "
            f"once they do (keel approve {result.run_id} --by NAME --app APP); its answer is "
            "in the run then."
        )
    why = f": {result.reason.message}" if result.reason is not None else ""
    return f"Run {result.run_id} stopped with status {result.status}{why}."


def _tool(runtime: Runtime, agent: Agent[Any]) -> Any:
    async def run_agent(
        message: str = Field(description="The message for the agent."),
        thread: str | None = Field(
            default=None,
            description="Continue this conversation (a thread id from an earlier answer); "
            "leave out for a new one.",
        ),
    ) -> str:
        try:
            result = await runtime.run(agent, message, thread=thread)
        except KeelError as exc:
            raise ProtocolToolError(exc.message) from None
        if result.status in ("failed", "cancelled"):
            raise ProtocolToolError(answer_text(result))
        return answer_text(result)

    return run_agent


def agent_server(runtime: Runtime, agents: Mapping[str, Agent[Any]]) -> ProtocolServer[Any]:
    """An MCP server with one tool per agent, each call a run on ``runtime``."""
    server: ProtocolServer[Any] = ProtocolServer(
        "keel", instructions="Each tool is a Keel agent: send it a message, read its answer."
    )
    for name, agent in sorted(agents.items()):
        server.add_tool(
            _tool(runtime, agent),
            name=_UNSAFE.sub("_", name)[:64],
            # Not the agent's instructions: a system prompt is not meant for its callers.
            description=f"Ask the agent '{name}'; each call is a journaled Keel run.",
            # A run can act (its tools write): not read-only, and not safe to repeat blindly.
            annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=False),
            structured_output=False,
        )
    return server

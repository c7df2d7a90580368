"""Which tools a run has, and what an agent says when a run starts (or is handed to it).

:func:`open_agent` asks an agent what it decides once per run (its instructions function,
its tool sources and its tool filter) for one run; the answer is journaled. :func:`run_tools`
finds the tool objects a journal names, in any process, without asking the filter again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keel._agent import Agent
from keel._context import (
    AgentContext,
    ContextError,
    available_tools,
    enabled_tools,
    evaluate_instructions,
)
from keel._core.eventbase import ErrorInfo
from keel._tools import Tool

__all__ = ["Opening", "open_agent", "run_tools"]


@dataclass(frozen=True, slots=True)
class Opening:
    """What an agent said for one run: its instructions and the names of its tools, or why
    it could not say (then the run fails with ``error``)."""

    instructions: str
    tools: tuple[str, ...]
    error: ErrorInfo | None = None


async def open_agent(agent: Agent[Any], context: AgentContext[Any]) -> Opening:
    """Ask ``agent`` for its instructions and tools for the run ``context`` describes."""
    if not agent.dynamic:
        return Opening(str(agent.instructions), tuple(agent.tools_by_name))
    try:
        text = await evaluate_instructions(agent.name, agent.instructions, context)
        available = available_tools(agent.name, agent.tools, agent.tool_sources)
        names = await enabled_tools(agent.name, available, agent.tool_filter, context)
    except ContextError as exc:
        return Opening("", (), ErrorInfo(code=exc.code, message=exc.message))
    return Opening(text, names)


def run_tools(agent: Agent[Any], names: Sequence[str]) -> dict[str, Tool]:
    """The tools named ``names`` (a journal's): the agent's own, else its sources' current
    ones. A name no longer offered is left out: a call of it is refused like an unknown
    tool's."""
    own = agent.tools_by_name
    if not agent.tool_sources or all(name in own for name in names):
        return {name: own[name] for name in names if name in own}
    try:
        available = available_tools(agent.name, agent.tools, agent.tool_sources)
    except ContextError:
        available = dict(own)  # the run goes on with what it can find
    return {name: available[name] for name in names if name in available}

"""What an agent decides once per run: its instructions, its tools, and who it is for.

::

    def instructions(ctx: AgentContext[Desk]) -> str:
        return f"You help {ctx.user} of tenant {ctx.tenant}. Today is {ctx.today}."

    def only_for_admins(ctx: AgentContext[Desk], tool: Tool) -> bool:
        return tool.name != "refund" or "admin" in ctx.roles

    agent = Agent(name="desk", instructions=instructions, tools=[lookup, refund, catalog],
                  tool_filter=only_for_admins)

An instructions function, a tool filter and the tool sources (objects with
``current_tools()``) are asked once, when a run starts (and when a run is handed to another
agent); what they said is journaled (``RunStarted.instructions`` and ``.tools``,
``HandedOff``). Resuming, replaying or showing a run reads the journal and never asks again.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from keel._tools import Tool

__all__ = [
    "AgentContext",
    "ContextError",
    "InstructionsFunction",
    "ToolFilter",
    "ToolSource",
    "available_tools",
    "enabled_tools",
    "evaluate_instructions",
]

DepsT = TypeVar("DepsT")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentContext(Generic[DepsT]):
    """What an instructions function and a tool filter learn about the run that starts.

    ``now`` is the runtime's clock (seconds since the epoch) when the run started, or was
    handed to this agent; ``deps`` the run's dependencies; ``tenant``, ``user`` and ``roles``
    who the run is for (``Runtime.run(tenant=..., user=..., roles=...)``); ``input`` the user's
    message.
    """

    deps: DepsT
    run_id: str
    thread_id: str
    agent: str
    now: float
    input: str = ""
    tenant: str | None = None
    user: str | None = None
    roles: tuple[str, ...] = ()

    @property
    def today(self) -> date:
        """The date (UTC) of :attr:`now`."""
        return datetime.fromtimestamp(self.now, UTC).date()


InstructionsFunction = Callable[[AgentContext[Any]], str | Awaitable[str]]
"""Instructions made for each run: ``(ctx) -> str``, sync or async."""

ToolFilter = Callable[[AgentContext[Any], Tool], bool | Awaitable[bool]]
"""Which tools a run may use: ``(ctx, tool) -> bool``, sync or async."""


@runtime_checkable
class ToolSource(Protocol):
    """Tools that may change from run to run (an MCP server's, a plugin directory's).

    ``Agent(tools=[...])`` takes sources beside tools. A source is asked for its tools when a
    run starts, and again when the run continues in another process (to find the tools its
    journal names). Keep ``current_tools`` quick: it runs on the event loop.
    """

    def current_tools(self) -> Sequence[Tool]:
        """The tools this source offers now."""
        ...


class ContextError(Exception):
    """An instructions function, tool filter or tool source failed; the run fails with
    ``code`` and this message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def _answer(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def evaluate_instructions(
    agent: str, instructions: str | InstructionsFunction, context: AgentContext[Any]
) -> str:
    """The instructions of a run: the text, or what the function returns for ``context``."""
    if isinstance(instructions, str):
        return instructions
    try:
        text = await _answer(instructions(context))
    except Exception as exc:
        raise ContextError(
            "instructions_failed",
            f"the instructions function of agent '{agent}' raised {type(exc).__name__}: {exc}",
        ) from exc
    if not isinstance(text, str):
        raise ContextError(
            "instructions_failed",
            f"the instructions function of agent '{agent}' returned a "
            f"{type(text).__name__}; it must return the instructions as a str",
        )
    return text


def available_tools(
    agent: str, tools: Iterable[Tool], sources: Sequence[ToolSource]
) -> dict[str, Tool]:
    """The agent's own tools and its sources' current ones, by name."""
    found = {item.name: item for item in tools}
    for source in sources:
        try:
            offered = list(source.current_tools())
        except Exception as exc:
            raise ContextError(
                "tool_source_failed",
                f"the tool source {type(source).__name__} of agent '{agent}' raised "
                f"{type(exc).__name__}: {exc}",
            ) from exc
        for item in offered:
            if not isinstance(item, Tool):
                raise ContextError(
                    "tool_source_failed",
                    f"the tool source {type(source).__name__} of agent '{agent}' offered a "
                    f"{type(item).__name__}; current_tools() must return keel.Tool objects",
                )
            if item.name in found and found[item.name] is not item:
                raise ContextError(
                    "tool_source_failed",
                    f"agent '{agent}' has two tools named '{item.name}' (one from the tool "
                    f"source {type(source).__name__}); rename one of them",
                )
            found[item.name] = item
    return found


async def enabled_tools(
    agent: str,
    available: Mapping[str, Tool],
    tool_filter: ToolFilter | None,
    context: AgentContext[Any],
) -> tuple[str, ...]:
    """The names of the tools ``tool_filter`` lets a run use (all without a filter)."""
    if tool_filter is None:
        return tuple(available)
    names: list[str] = []
    for name, item in available.items():
        try:
            allowed = await _answer(tool_filter(context, item))
        except Exception as exc:
            raise ContextError(
                "tool_filter_failed",
                f"the tool filter of agent '{agent}' raised {type(exc).__name__} for tool "
                f"'{name}': {exc}",
            ) from exc
        if allowed is True:
            names.append(name)
        elif allowed is not False:
            raise ContextError(
                "tool_filter_failed",
                f"the tool filter of agent '{agent}' returned {allowed!r} for tool '{name}'; "
                "it must return True or False",
            )
    return tuple(names)

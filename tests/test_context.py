"""Agent definitions with instructions functions, tool filters, tool sources and handoffs:
what is accepted, and the clear errors for what is not."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pytest

from keel import Agent, AgentContext, Tool, ToolSource, tool
from keel.errors import ConfigurationError, ToolDefinitionError


@tool
def lookup(order_id: str) -> str:
    """Look an order up."""
    return order_id


class Source:
    def __init__(self, *tools: Tool) -> None:
        self.tools = list(tools)

    def current_tools(self) -> Sequence[Tool]:
        return self.tools


def test_the_context_tells_the_date_of_its_clock() -> None:
    ctx = AgentContext(deps=None, run_id="r", thread_id="t", agent="a", now=86_400.0 * 2.5)
    assert ctx.today == date(1970, 1, 3)


def test_tool_sources_are_kept_apart_from_tools() -> None:
    source = Source(lookup)
    agent = Agent(name="a", model="rules", tools=[lookup, source])

    assert isinstance(source, ToolSource)
    assert agent.tool_sources == (source,)
    assert list(agent.tools_by_name) == ["lookup"]
    assert agent.dynamic
    assert not Agent(name="b", model="rules", tools=[lookup]).dynamic


def test_instructions_must_be_text_or_a_function() -> None:
    with pytest.raises(ConfigurationError, match="instructions must be a str or a function"):
        Agent(name="a", model="rules", instructions=42)  # type: ignore[call-overload]


def test_a_tool_filter_must_be_a_function() -> None:
    with pytest.raises(ConfigurationError, match=r"tool_filter must be a function \(ctx, tool\)"):
        Agent(name="a", model="rules", tool_filter="admins")  # type: ignore[call-overload]


def test_handoffs_must_be_agents_with_short_enough_names() -> None:
    with pytest.raises(ConfigurationError, match=r"handoffs must be keel\.Agent objects"):
        Agent(name="a", model="rules", handoffs=["billing"])  # type: ignore[list-item]
    long_name = Agent(name="b" * 60, model="rules")
    with pytest.raises(ConfigurationError, match="longer than 64 characters"):
        Agent(name="a", model="rules", handoffs=[long_name])


def test_an_agent_knows_every_agent_its_handoffs_lead_to() -> None:
    refunds = Agent(name="refunds", model="rules")
    billing = Agent(name="billing", model="rules", handoffs=[refunds])
    triage = Agent(name="triage", model="rules", handoffs=[billing])

    assert list(triage.reachable()) == ["triage", "billing", "refunds"]
    assert [d.name for d in triage.handoff_definitions] == ["transfer_to_billing"]
    assert Agent(name="x", model="rules", handoffs=[Agent(name="a.b", model="rules")]).handoffs


def test_a_tool_named_like_a_handoff_clashes() -> None:
    def transfer_to_billing() -> str:
        """A clash."""
        return ""

    with pytest.raises(ToolDefinitionError, match="transfer_to_billing"):
        Agent(
            name="a",
            model="rules",
            tools=[transfer_to_billing],
            handoffs=[Agent(name="billing", model="rules")],
        )

"""Agent definitions: validation with clear errors, and what the loop is told about them."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from keel import Agent, Limits, tool
from keel.errors import ConfigurationError, ToolDefinitionError


def lookup_order(order_id: str) -> str:
    """Find an order."""
    return order_id


class Answer(BaseModel):
    text: str


def test_an_agent_builds_its_tool_definitions_and_loop_spec() -> None:
    agent = Agent(name="support", instructions="Help.", model="rules", tools=[lookup_order])

    assert [d.name for d in agent.tool_definitions] == ["lookup_order"]
    assert set(agent.loop_spec.tools) == {"lookup_order"}
    assert agent.loop_spec.output is None  # plain text answers
    assert agent.limits == Limits()
    assert "support" in repr(agent)


def test_an_output_type_gives_the_loop_an_output_spec() -> None:
    agent = Agent(name="a", output_type=Answer)
    assert agent.loop_spec.output is not None
    assert agent.loop_spec.output.name == "Answer"


@pytest.mark.parametrize("name", ["", "has space", "-leading", "x" * 101, "naïve"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="is not allowed"):
        Agent(name=name)


def test_duplicate_tool_names_are_refused_with_the_fix() -> None:
    def another(order_id: str) -> str:
        """Find an order, elsewhere."""
        return order_id

    other = tool(name="lookup_order")(another)
    with pytest.raises(ToolDefinitionError, match=r"two tools named 'lookup_order'.*@tool\(name"):
        Agent(name="a", tools=[lookup_order, other])


def test_a_model_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="model must be a model name"):
        Agent(name="a", model=42)  # type: ignore[call-overload]


def test_tools_must_be_a_list() -> None:
    with pytest.raises(ConfigurationError, match="tools must be a list"):
        Agent(name="a", tools="lookup_order")  # type: ignore[arg-type]

"""Static checks of the public API's types: mypy (run on tests/) must accept every line.

Nothing here runs at test time; ``assert_type`` is checked by the type checker.
"""

from __future__ import annotations

from typing import assert_type

from pydantic import BaseModel

from keel import Agent, RunResult, Runtime, Tool, tool


class Order(BaseModel):
    order_id: str


@tool
def lookup(order_id: str) -> str:
    """Look up."""
    return order_id


async def typed_results(runtime: Runtime) -> None:
    text_agent = Agent(name="a", tools=[lookup])
    typed_agent = Agent(name="b", output_type=Order)

    assert_type(lookup, Tool)
    assert_type(text_agent, Agent[str])
    assert_type(typed_agent, Agent[Order])

    text = await runtime.run(text_agent, "hi")
    typed = await runtime.run(typed_agent, "hi")
    assert_type(text, RunResult[str])
    assert_type(typed, RunResult[Order])
    assert_type(typed.output, Order)
    assert_type(typed.output_or_none, Order | None)
    assert_type(runtime.run_sync(typed_agent, "hi").output, Order)
    assert_type(typed.cost_usd, float | None)


def dynamic_agents() -> None:
    from collections.abc import Sequence

    from keel import AgentContext, ToolSource

    def instructions(ctx: AgentContext[dict[str, str]]) -> str:
        return ctx.deps["plan"]

    async def async_instructions(ctx: AgentContext[None]) -> str:
        return str(ctx.today)

    def only_reads(ctx: AgentContext[None], item: Tool) -> bool:
        return item.spec.side_effects != "write"

    class Source:
        def current_tools(self) -> Sequence[Tool]:
            return [lookup]

    source: ToolSource = Source()
    billing = Agent(name="billing", instructions=async_instructions, tools=[source])
    triage = Agent(
        name="triage",
        instructions=instructions,
        tools=[lookup, source],
        tool_filter=only_reads,
        sequential_tool_calls=True,
        handoffs=[billing],
    )
    assert_type(triage, Agent[str])

"""The agents of the handoff tests: triage hands billing questions to billing."""

from __future__ import annotations

import os

from keel import Agent, AgentContext, Model, tool
from keel.testing import ScriptedModel, call


@tool(side_effects="read")
def lookup_order(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: shipped"


@tool(side_effects="read")
def invoice(number: str) -> str:
    """Look an invoice up."""
    return f"invoice {number}: paid"


def billing_instructions(ctx: AgentContext[None]) -> str:
    """Made once, by the process where the handoff happens (its pid shows which)."""
    return f"You handle billing for {ctx.user or 'anyone'} (made by process {os.getpid()})."


def build(
    *, billing_model: Model, triage_model: Model | None = None
) -> tuple[Agent[str], Agent[str]]:
    """Triage (asks to transfer at once unless given another model) and billing."""
    billing = Agent(
        name="billing",
        instructions=billing_instructions,
        model=billing_model,
        tools=[invoice],
    )
    triage = Agent(
        name="triage",
        instructions="You route customers.",
        model=triage_model or ScriptedModel([call("transfer_to_billing")], name="triage-model"),
        tools=[lookup_order],
        handoffs=[billing],
    )
    return triage, billing

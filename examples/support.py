"""A customer-support agent: orders, a help-centre FAQ, refunds and tickets.

Run it from a shell (offline, on the rule-based model it names)::

    keel run examples/support.py:agent "Where is order 1042?"
    keel run examples/support.py:agent "What is your return policy?" --thread customer-42
    keel run examples/support.py:agent 'Please refund $120 on order 1043'   # waits for approval
    keel approvals list
    keel approve RUN_ID --by ana --app examples/support.py
    keel runs list

``--model openai:gpt-4o-mini`` (or ``ollama:llama3.2``...) runs the same agent on a real model.

The desk's data is a small, made-up data set kept in memory. Tools reach it through
``ctx.deps``, never through globals, so a test can hand each run a fresh desk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from keel import Agent, RunContext, ToolError, tool

__all__ = ["SupportDesk", "agent"]

OrderStatus = Literal["processing", "shipped", "delivered", "cancelled"]


@dataclass(frozen=True)
class Order:
    """An order as the desk sees it."""

    order_id: str
    customer_email: str
    status: OrderStatus
    items: tuple[str, ...]
    total_usd: float
    carrier: str | None = None
    tracking: str | None = None
    eta: str | None = None


@dataclass(frozen=True)
class Refund:
    """A refund issued by the desk."""

    refund_id: str
    order_id: str
    amount_usd: float
    reason: str


@dataclass
class SupportDesk:
    """The support desk's data: orders, FAQ entries, refunds and tickets."""

    orders: dict[str, Order]
    faq: dict[str, str]
    refunds: dict[str, Refund] = field(default_factory=dict)
    tickets: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def demo(cls) -> SupportDesk:
        """A desk with a few orders and help-centre answers."""
        orders = [
            Order(
                "123",
                "sam@example.com",
                "shipped",
                ("Headlamp", "Batteries"),
                42.5,
                "DHL",
                "JD014600003828473",
                "2026-11-26",
            ),
            Order(
                "1042",
                "ana@example.com",
                "shipped",
                ("Trail shoes",),
                89.0,
                "UPS",
                "1Z999AA10123456784",
                "2026-11-27",
            ),
            Order("1043", "ben@example.com", "processing", ("Rain jacket", "Socks"), 134.5),
            Order(
                "1044",
                "cleo@example.com",
                "delivered",
                ("Water bottle",),
                19.99,
                "USPS",
                "9400111899223856",
                "2026-11-20",
            ),
            Order("1045", "dev@example.com", "cancelled", ("Tent",), 249.0),
        ]
        faq = {
            "returns": "You can return unworn items within 30 days of delivery for a full "
            "refund. Start a return from your order page; the return label is free.",
            "shipping": "Standard shipping takes 3-5 business days and is free over $50. "
            "Express shipping takes 1-2 business days and costs $15.",
            "warranty": "Footwear and jackets carry a 1-year warranty against manufacturing "
            "defects. Open a ticket with photos to make a claim.",
            "payment": "We accept all major cards and PayPal. You are charged when the order "
            "ships.",
        }
        return cls(orders={o.order_id: o for o in orders}, faq=faq)


def _order(desk: SupportDesk, order_id: str) -> Order:
    key = order_id.strip().lstrip("#")
    order = desk.orders.get(key)
    if order is None:
        raise ToolError(f"there is no order {order_id}; ask the customer to check the number")
    return order


@tool(idempotent=True, side_effects="read")
def lookup_order(ctx: RunContext[SupportDesk], order_id: str) -> dict[str, object]:
    """Look up an order's status, items, total and shipping by its order id.

    Args:
        order_id: The order number, e.g. 1042.
    """
    order = _order(ctx.deps, order_id)
    found: dict[str, object] = {
        "order_id": order.order_id,
        "status": order.status,
        "items": list(order.items),
        "total_usd": order.total_usd,
    }
    if order.carrier:
        found.update(carrier=order.carrier, tracking=order.tracking, eta=order.eta)
    return found


@tool(idempotent=True, side_effects="read")
def search_faq(ctx: RunContext[SupportDesk], query: str) -> list[dict[str, str]]:
    """Search the help-centre FAQ (returns, shipping, warranty, payment policy).

    Args:
        query: What the customer wants to know, in their words.
    """
    words = set(re.findall(r"[a-z]+", query.lower()))
    scored = []
    for topic, answer in ctx.deps.faq.items():
        text = set(re.findall(r"[a-z]+", f"{topic} {answer}".lower()))
        stems = {w.rstrip("s") for w in words}
        score = len(words & text) + 3 * (topic.rstrip("s") in stems)
        if score:
            scored.append((score, topic, answer))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [{"topic": topic, "answer": answer} for _, topic, answer in scored[:2]]


@tool(idempotent=True, requires_approval=lambda args: args["amount_usd"] > 100)
def refund_order(
    ctx: RunContext[SupportDesk], order_id: str, amount_usd: float, reason: str
) -> dict[str, object]:
    """Refund part or all of an order to the customer's original payment method.

    Refunds over $100 wait for a person's approval (keel approvals list, keel approve).

    Args:
        order_id: The order to refund, e.g. 1042.
        amount_usd: How much to refund, in US dollars.
        reason: Why the customer is being refunded.
    """
    order = _order(ctx.deps, order_id)
    # The idempotency key makes a repeated call (a retry, a resumed run) return the same refund
    # instead of paying twice.
    existing = ctx.deps.refunds.get(ctx.idempotency_key)
    if existing is not None:
        return {"refund_id": existing.refund_id, "amount_usd": existing.amount_usd}
    if order.status == "cancelled":
        raise ToolError(f"order {order.order_id} was cancelled and never charged; no refund due")
    refunded = sum(r.amount_usd for r in ctx.deps.refunds.values() if r.order_id == order.order_id)
    if amount_usd <= 0 or refunded + amount_usd > order.total_usd:
        raise ToolError(
            f"cannot refund ${amount_usd:.2f}: order {order.order_id} totals "
            f"${order.total_usd:.2f} and ${refunded:.2f} was already refunded"
        )
    refund = Refund(f"rf_{len(ctx.deps.refunds) + 1:04d}", order.order_id, amount_usd, reason)
    ctx.deps.refunds[ctx.idempotency_key] = refund
    return {"refund_id": refund.refund_id, "amount_usd": amount_usd, "order_id": order.order_id}


@tool(idempotent=True)
def create_ticket(ctx: RunContext[SupportDesk], email: str, summary: str) -> dict[str, str]:
    """Open a support ticket for a person to follow up by email.

    Args:
        email: The customer's email address.
        summary: What the ticket is about.
    """
    if "@" not in email:
        raise ToolError(f"'{email}' is not an email address; ask the customer for theirs")
    ticket_id = ctx.deps.tickets.get(ctx.idempotency_key, {}).get("ticket_id")
    if ticket_id is None:
        ticket_id = f"T-{len(ctx.deps.tickets) + 1:04d}"
        ctx.deps.tickets[ctx.idempotency_key] = {
            "ticket_id": ticket_id,
            "email": email,
            "summary": summary,
        }
    return {"ticket_id": ticket_id, "email": email}


INSTRUCTIONS = """\
You are the support agent of an outdoor-gear shop. Be brief and friendly.
Use lookup_order for questions about an order, search_faq for policies, refund_order only when
the customer asks for a refund and the order qualifies, and create_ticket when a person must
follow up. Never invent order details: answer from tool results only."""

agent = Agent(
    name="support",
    instructions=INSTRUCTIONS,
    # The offline, deterministic model, named here on purpose: it never runs unless named.
    model="rules",
    tools=[lookup_order, search_faq, refund_order, create_ticket],
    deps=SupportDesk.demo(),
)
"""The support agent, on the offline rule-based model; ``keel run --model ...`` (or
``Runtime.run(..., model=...)``) runs it on another one."""

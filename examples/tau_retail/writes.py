"""The retail tools that change the database: cancel, modify, return, exchange, re-address.

Each checks everything first and changes nothing when it refuses, so a refused call (a
:class:`keel.ToolError`, read by the model as ``"Error: ..."``) leaves the database as it was.
Changes go through the database's ``writable_*`` methods (see :mod:`.db`). Amounts are
rounded to cents, as prices are.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from examples.tau_retail.db import Entity, RetailDB
from examples.tau_retail.reads import find_order, find_product, find_user
from keel import RunContext, Tool, ToolError, tool

__all__ = [
    "WRITE_TOOLS",
    "cancel_pending_order",
    "exchange_delivered_order_items",
    "modify_pending_order_address",
    "modify_pending_order_items",
    "modify_pending_order_payment",
    "modify_user_address",
    "return_delivered_order_items",
]

CancelReason = Literal["no longer needed", "ordered by mistake"]
ITEMS_MODIFIED = "pending (item modified)"


def _status(order: Entity, wanted: str, action: str) -> None:
    if order["status"] != wanted:
        raise ToolError(
            f"non-{wanted} order cannot be {action}: order {order['order_id']} is "
            f"{order['status']!r}, and only {wanted!r} orders can be"
        )


def _payment_method(db: RetailDB, user_id: str, payment_method_id: str) -> Entity:
    methods: dict[str, Entity] = find_user(db, user_id)["payment_methods"]
    method = methods.get(payment_method_id)
    if method is None:
        raise ToolError(
            f"payment method not found: user {user_id} has no {payment_method_id!r}; theirs "
            f"are {', '.join(sorted(methods))}"
        )
    return method


def _gift_card_covers(method: Entity, amount: float, what: str) -> None:
    if method["source"] == "gift_card" and method["balance"] < amount:
        raise ToolError(
            f"insufficient gift card balance to pay for {what}: {method['id']} holds "
            f"{method['balance']} and {round(amount, 2)} is due"
        )


def _pay(db: RetailDB, user_id: str, payment_method_id: str, amount: float) -> None:
    """Take ``amount`` from a gift card (give it back when negative); other methods are
    charged or refunded outside the store."""
    if _payment_method(db, user_id, payment_method_id)["source"] != "gift_card":
        return
    method = db.writable_user(user_id)["payment_methods"][payment_method_id]
    method["balance"] = round(method["balance"] - amount, 2)


def _items_in(order: Entity, item_ids: list[str]) -> list[Entity]:
    """The order's items for ``item_ids`` (a repeated id takes another item with that id)."""
    have = Counter(str(item["item_id"]) for item in order["items"])
    for item_id, wanted in Counter(item_ids).items():
        if have[item_id] < wanted:
            raise ToolError(
                f"item {item_id} not found {'enough times ' if have[item_id] else ''}in order "
                f"{order['order_id']}; its items are {', '.join(sorted(have))}"
            )
    taken: list[Entity] = []
    for item_id in item_ids:
        # By identity: two items of the same variant are equal dicts, yet both can be taken.
        taken.append(
            next(
                i
                for i in order["items"]
                if i["item_id"] == item_id and all(i is not t for t in taken)
            )
        )
    return taken


def _replacements(
    db: RetailDB, order: Entity, item_ids: list[str], new_item_ids: list[str]
) -> tuple[list[Entity], float]:
    """The new variants for the order's items, in the same order, and the price difference."""
    if len(item_ids) != len(new_item_ids):
        raise ToolError(
            f"the number of items to be exchanged should match: {len(item_ids)} item ids but "
            f"{len(new_item_ids)} new item ids"
        )
    if not item_ids:
        raise ToolError("no items given: list the item ids to change")
    old_items = _items_in(order, item_ids)
    variants = []
    difference = 0.0
    for old, new_id in zip(old_items, new_item_ids, strict=True):
        product = find_product(db, str(old["product_id"]))
        variant = product["variants"].get(new_id)
        if variant is None or not variant["available"]:
            raise ToolError(
                f"new item {new_id} not found or available: it must be an available item of "
                f"the same product ({product['name']}, {product['product_id']}) as {old['item_id']}"
            )
        variants.append(variant)
        difference += variant["price"] - old["price"]
    return variants, round(difference, 2)


@tool(side_effects="write")
def cancel_pending_order(ctx: RunContext[RetailDB], order_id: str, reason: CancelReason) -> Entity:
    """Cancel a pending order and refund it: at once to a gift card, else in 5-7 business
    days. Explain the details and get the user's explicit yes first. Returns the order.

    Args:
        order_id: The order id, such as '#W0000000' (with the '#').
        reason: Why: 'no longer needed' or 'ordered by mistake'.
    """
    db = ctx.deps
    _status(find_order(db, order_id), "pending", "cancelled")
    order = db.writable_order(order_id)
    refunds = []
    for payment in order["payment_history"]:
        if payment["transaction_type"] != "payment":
            continue
        method_id = payment["payment_method_id"]
        refunds.append(
            {
                "transaction_type": "refund",
                "amount": payment["amount"],
                "payment_method_id": method_id,
            }
        )
        _pay(db, order["user_id"], method_id, -payment["amount"])
    order["payment_history"].extend(refunds)
    order["status"] = "cancelled"
    order["cancel_reason"] = reason
    return order


@tool(side_effects="write")
def exchange_delivered_order_items(
    ctx: RunContext[RetailDB],
    order_id: str,
    item_ids: list[str],
    new_item_ids: list[str],
    payment_method_id: str,
) -> Entity:
    """Exchange items of a delivered order for other options of the same products. Possible
    once per order: collect every item first, explain, and get the user's explicit yes.

    Args:
        order_id: The order id, such as '#W0000000' (with the '#').
        item_ids: The items to exchange, such as ['1008292230']; repeat an id for two of it.
        new_item_ids: What each item becomes, position by position, of the same product.
        payment_method_id: Pays or receives the price difference, such as 'gift_card_0000000'.
    """
    db = ctx.deps
    current = find_order(db, order_id)
    _status(current, "delivered", "exchanged")
    _, difference = _replacements(db, current, item_ids, new_item_ids)
    method = _payment_method(db, current["user_id"], payment_method_id)
    _gift_card_covers(method, difference, "the price difference")
    order = db.writable_order(order_id)
    order["status"] = "exchange requested"
    order["exchange_items"] = sorted(item_ids)
    order["exchange_new_items"] = sorted(new_item_ids)
    order["exchange_payment_method_id"] = payment_method_id
    order["exchange_price_difference"] = difference
    return order


def _address(
    *, address1: str, address2: str, city: str, state: str, country: str, zip: str
) -> dict[str, str]:
    return {
        "address1": address1,
        "address2": address2,
        "city": city,
        "state": state,
        "country": country,
        "zip": zip,
    }


@tool(idempotent=True, side_effects="write")
def modify_pending_order_address(
    ctx: RunContext[RetailDB],
    *,
    order_id: str,
    address1: str,
    address2: str,
    city: str,
    state: str,
    country: str,
    zip: str,
) -> Entity:
    """Change the shipping address of a pending order. Explain the change and get the
    user's explicit yes first. Returns the order.

    Args:
        order_id: The order id, such as '#W0000000' (with the '#').
        address1: The first line, such as '123 Main St'.
        address2: The second line, such as 'Apt 1', or ''.
        city: The city, such as 'San Francisco'.
        state: The state, such as 'CA'.
        country: The country, such as 'USA'.
        zip: The zip code, such as '12345'.
    """
    db = ctx.deps
    _status(find_order(db, order_id), "pending", "modified")
    order = db.writable_order(order_id)
    order["address"] = _address(
        address1=address1, address2=address2, city=city, state=state, country=country, zip=zip
    )
    return order


@tool(side_effects="write")
def modify_pending_order_items(
    ctx: RunContext[RetailDB],
    order_id: str,
    item_ids: list[str],
    new_item_ids: list[str],
    payment_method_id: str,
) -> Entity:
    """Change items of a pending order to other options of the same products. Possible once
    per order: collect every item first, explain, and get the user's explicit yes.

    Args:
        order_id: The order id, such as '#W0000000' (with the '#').
        item_ids: The items to change, such as ['1008292230']; repeat an id for two of it.
        new_item_ids: What each item becomes, position by position, of the same product.
        payment_method_id: Pays or receives the price difference, such as 'gift_card_0000000'.
    """
    db = ctx.deps
    current = find_order(db, order_id)
    _status(current, "pending", "modified")
    variants, difference = _replacements(db, current, item_ids, new_item_ids)
    method = _payment_method(db, current["user_id"], payment_method_id)
    _gift_card_covers(method, difference, "the price difference")
    order = db.writable_order(order_id)
    for item, variant in zip(_items_in(order, item_ids), variants, strict=True):
        item["item_id"] = variant["item_id"]
        item["price"] = variant["price"]
        item["options"] = dict(variant["options"])
    order["payment_history"].append(
        {
            "transaction_type": "payment" if difference > 0 else "refund",
            "amount": abs(difference),
            "payment_method_id": payment_method_id,
        }
    )
    _pay(db, order["user_id"], payment_method_id, difference)
    order["status"] = ITEMS_MODIFIED
    return order


@tool(side_effects="write")
def modify_pending_order_payment(
    ctx: RunContext[RetailDB], order_id: str, payment_method_id: str
) -> Entity:
    """Pay a pending order with another of the user's payment methods; the first one is
    refunded. Explain the change and get the user's explicit yes first. Returns the order.

    Args:
        order_id: The order id, such as '#W0000000' (with the '#').
        payment_method_id: The new payment method, such as 'credit_card_0000000'.
    """
    db = ctx.deps
    current = find_order(db, order_id)
    _status(current, "pending", "modified")
    payments = current["payment_history"]
    if len(payments) != 1:
        raise ToolError(
            f"there should be exactly one payment for a pending order; order {order_id} has "
            f"{len(payments)}"
        )
    old_id, amount = payments[0]["payment_method_id"], payments[0]["amount"]
    if old_id == payment_method_id:
        raise ToolError(
            f"the new payment method should be different from the current one ({old_id})"
        )
    method = _payment_method(db, current["user_id"], payment_method_id)
    _gift_card_covers(method, amount, "the order")
    order = db.writable_order(order_id)
    order["payment_history"].extend(
        [
            {
                "transaction_type": "payment",
                "amount": amount,
                "payment_method_id": payment_method_id,
            },
            {"transaction_type": "refund", "amount": amount, "payment_method_id": old_id},
        ]
    )
    _pay(db, order["user_id"], payment_method_id, amount)
    _pay(db, order["user_id"], old_id, -amount)
    return order


@tool(idempotent=True, side_effects="write")
def modify_user_address(
    ctx: RunContext[RetailDB],
    *,
    user_id: str,
    address1: str,
    address2: str,
    city: str,
    state: str,
    country: str,
    zip: str,
) -> Entity:
    """Change a user's default address. Explain the change and get the user's explicit yes
    first. Returns the user.

    Args:
        user_id: The user id, such as 'sara_doe_496'.
        address1: The first line, such as '123 Main St'.
        address2: The second line, such as 'Apt 1', or ''.
        city: The city, such as 'San Francisco'.
        state: The state, such as 'CA'.
        country: The country, such as 'USA'.
        zip: The zip code, such as '12345'.
    """
    db = ctx.deps
    find_user(db, user_id)
    user = db.writable_user(user_id)
    user["address"] = _address(
        address1=address1, address2=address2, city=city, state=state, country=country, zip=zip
    )
    return user


@tool(side_effects="write")
def return_delivered_order_items(
    ctx: RunContext[RetailDB], order_id: str, item_ids: list[str], payment_method_id: str
) -> Entity:
    """Return items of a delivered order; the user gets an email saying how. The refund goes
    to the original payment method or a gift card. Explain and get the user's explicit yes.

    Args:
        order_id: The order id, such as '#W0000000' (with the '#').
        item_ids: The items to return, such as ['1008292230']; repeat an id for two of it.
        payment_method_id: Receives the refund, such as 'gift_card_0000000'.
    """
    db = ctx.deps
    current = find_order(db, order_id)
    _status(current, "delivered", "returned")
    method = _payment_method(db, current["user_id"], payment_method_id)
    original = current["payment_history"][0]["payment_method_id"]
    if method["source"] != "gift_card" and payment_method_id != original:
        raise ToolError(
            f"payment method should be either the original payment method ({original}) or a "
            f"gift card, not {payment_method_id}"
        )
    _items_in(current, item_ids)
    order = db.writable_order(order_id)
    order["status"] = "return requested"
    order["return_items"] = sorted(item_ids)
    order["return_payment_method_id"] = payment_method_id
    return order


WRITE_TOOLS: tuple[Tool, ...] = (
    cancel_pending_order,
    exchange_delivered_order_items,
    modify_pending_order_address,
    modify_pending_order_items,
    modify_pending_order_payment,
    modify_user_address,
    return_delivered_order_items,
)
"""The tools that change the database."""

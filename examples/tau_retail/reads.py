"""The retail tools that change nothing: look-ups, a calculator, thinking, and handing over.

Each tool's name and parameters are the published ones (``tools.json``); failures raise
:class:`keel.ToolError`, which the model reads as ``"Error: ..."``, as tau-bench's tools
return. Tools find the database in ``ctx.deps``, so every run can have one of its own.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

from examples.tau_retail.db import Entity, RetailDB
from keel import RunContext, Tool, ToolError, tool

__all__ = [
    "READ_TOOLS",
    "calculate",
    "find_order",
    "find_product",
    "find_user",
    "find_user_id_by_email",
    "find_user_id_by_name_zip",
    "get_order_details",
    "get_product_details",
    "get_user_details",
    "list_all_product_types",
    "think",
    "transfer_to_human_agents",
]


def find_user(db: RetailDB, user_id: str) -> Entity:
    """The user, or a ``ToolError`` saying it is not found."""
    user = db.users.get(user_id)
    if user is None:
        raise ToolError(f"user not found: no user has the id {user_id!r}")
    return user


def find_order(db: RetailDB, order_id: str) -> Entity:
    """The order, or a ``ToolError`` saying it is not found."""
    order = db.orders.get(order_id)
    if order is None:
        raise ToolError(
            f"order not found: no order has the id {order_id!r} (order ids look like "
            "'#W0000000', with the '#')"
        )
    return order


def find_product(db: RetailDB, product_id: str) -> Entity:
    """The product, or a ``ToolError`` saying it is not found."""
    product = db.products.get(product_id)
    if product is None:
        raise ToolError(
            f"product not found: no product has the id {product_id!r} (a product id is not "
            "an item id)"
        )
    return product


@tool(idempotent=True, side_effects="read")
def find_user_id_by_email(ctx: RunContext[RetailDB], email: str) -> str:
    """Find a user's id from their email address; an error if no user has it.

    Args:
        email: The user's email, such as 'something@example.com'.
    """
    users = ctx.deps.users
    # The exact address first: one pass of plain comparisons finds nearly every user.
    for user_id, user in users.items():
        if user["email"] == email:
            return user_id
    wanted = email.strip().lower()
    for user_id, user in users.items():
        if str(user["email"]).lower() == wanted:
            return user_id
    raise ToolError(f"user not found: no user has the email {email!r}")


@tool(idempotent=True, side_effects="read")
def find_user_id_by_name_zip(
    ctx: RunContext[RetailDB], first_name: str, last_name: str, zip: str
) -> str:
    """Find a user's id from their first name, last name and zip code; an error if none
    matches. Look users up by email first; use this when they cannot give their email.

    Args:
        first_name: The user's first name, such as 'John'.
        last_name: The user's last name, such as 'Doe'.
        zip: The zip code of the user's address, such as '12345'.
    """
    first, last, code = first_name.strip().lower(), last_name.strip().lower(), zip.strip()
    for user_id, user in ctx.deps.users.items():
        if user["address"]["zip"] != code:  # the cheap test first
            continue
        name = user["name"]
        if str(name["first_name"]).lower() == first and str(name["last_name"]).lower() == last:
            return user_id
    raise ToolError(f"user not found: nobody named {first_name} {last_name} lives in {zip}")


@tool(idempotent=True, side_effects="read")
def get_order_details(ctx: RunContext[RetailDB], order_id: str) -> Entity:
    """The status and details of an order: items, address, fulfilments, payments.

    Args:
        order_id: The order id, such as '#W0000000' (with the '#').
    """
    return find_order(ctx.deps, order_id)


@tool(idempotent=True, side_effects="read")
def get_product_details(ctx: RunContext[RetailDB], product_id: str) -> Entity:
    """A product's variants (items) with their options, prices and availability.

    Args:
        product_id: The product id, such as '6086499569'; not an item id.
    """
    return find_product(ctx.deps, product_id)


@tool(idempotent=True, side_effects="read")
def get_user_details(ctx: RunContext[RetailDB], user_id: str) -> Entity:
    """A user's profile: name, email, default address, payment methods and order ids.

    Args:
        user_id: The user id, such as 'sara_doe_496'.
    """
    return find_user(ctx.deps, user_id)


@tool(idempotent=True, side_effects="read")
def list_all_product_types(ctx: RunContext[RetailDB]) -> dict[str, str]:
    """The name and product id of each of the store's 50 product types, sorted by name."""
    found = {str(p["name"]): product_id for product_id, p in ctx.deps.products.items()}
    return dict(sorted(found.items()))


_OPERATORS: dict[type[ast.AST], Callable[..., float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_ALLOWED = frozenset("0123456789+-*/(). ")


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"unsupported expression element {type(node).__name__}")


@tool(idempotent=True, side_effects="none")
def calculate(expression: str) -> str:
    """Calculate an arithmetic expression, rounded to 2 decimals.

    Args:
        expression: Numbers, + - * /, parentheses and spaces, such as '2 + 2'.
    """
    if not expression.strip() or not set(expression) <= _ALLOWED:
        raise ToolError(
            f"invalid characters in expression {expression!r}: use only numbers, "
            "+ - * /, parentheses and spaces"
        )
    try:
        value = _evaluate(ast.parse(expression, mode="eval"))
    except ZeroDivisionError:
        raise ToolError(f"division by zero in {expression!r}") from None
    except (SyntaxError, ValueError) as exc:
        raise ToolError(f"cannot calculate {expression!r}: {exc}") from None
    return str(round(value, 2))


@tool(idempotent=True, side_effects="none")
def think(thought: str) -> str:
    """Think something through (complex reasoning, or a note to remember). It looks nothing up
    and changes nothing.

    Args:
        thought: The thought.
    """
    return ""


# A hand-over reaches outside the run (a person picks the conversation up), so it is declared
# a write even though the mock database does not record it.
@tool(side_effects="write")
def transfer_to_human_agents(summary: str) -> str:
    """Transfer the user to a human agent with a summary of their issue. Only when the user
    asks for a person, or the request cannot be handled with the other tools.

    Args:
        summary: A summary of the user's issue.
    """
    return "Transfer successful"


READ_TOOLS: tuple[Tool, ...] = (
    calculate,
    find_user_id_by_email,
    find_user_id_by_name_zip,
    get_order_details,
    get_product_details,
    get_user_details,
    list_all_product_types,
    think,
    transfer_to_human_agents,
)
"""The tools that leave the database as it is."""

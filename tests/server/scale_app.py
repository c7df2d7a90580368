"""The agent the scale-out test serves from several processes: it ships an order (a tool that
writes to PostgreSQL, safe to repeat under its idempotency key) and says so.

The shipments table is keyed by the call's idempotency key: a retry of the same call after a
worker died writes nothing new, and a second call for the same order would show as a second
row. Every attempt is also counted, to show that kills did land in the work.
"""

from __future__ import annotations

import os
import time

import psycopg

from keel import Agent, RunContext, tool
from keel.messages import ModelRequest, ToolResultMessage, UserMessage
from keel.testing import FunctionModel, Scripted, call

URL = os.environ.get("SCALE_DB_URL", "")
SCHEMA = os.environ.get("SCALE_SCHEMA", "")


def create_tables(url: str, schema: str) -> None:
    """The shipments and attempts tables, in ``schema``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".shipments (key TEXT PRIMARY KEY, order_id TEXT NOT NULL)'
        )
        conn.execute(f'CREATE TABLE "{schema}".attempts (order_id TEXT NOT NULL)')


@tool(idempotent=True)
def ship(ctx: RunContext[None], order: str) -> str:
    """Ship an order."""
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f'INSERT INTO "{SCHEMA}".attempts (order_id) VALUES (%s)', (order,))
        time.sleep(0.2)  # a kill may land here: the call runs again, under the same key
        conn.execute(
            f'INSERT INTO "{SCHEMA}".shipments (key, order_id) VALUES (%s, %s) '
            "ON CONFLICT (key) DO NOTHING",
            (ctx.idempotency_key, order),
        )
    return f"order {order} shipped"


def _decide(request: ModelRequest) -> Scripted:
    order = next(m.content for m in request.messages if isinstance(m, UserMessage))
    if any(isinstance(m, ToolResultMessage) for m in request.messages):
        return f"Order {order} is on its way."
    return call("ship", order=order)


shipper = Agent(name="shipper", model=FunctionModel(_decide), tools=[ship])

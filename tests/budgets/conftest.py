"""A ledger of each kind for the contract suite: memory, SQLite, PostgreSQL (fresh schema)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel.budgets import BudgetLedger, open_budget_ledger
from tests.postgres import drop_schema, new_schema_name

KINDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=KINDS)
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BudgetLedger]:
    """An empty ledger of each kind."""
    kind = request.param
    url = schema = ""
    if kind == "memory":
        made = open_budget_ledger("memory")
    elif kind == "sqlite":
        made = open_budget_ledger(f"sqlite:///{tmp_path / 'keel.db'}")
    else:
        url, schema = request.getfixturevalue("postgres_url"), new_schema_name()
        made = open_budget_ledger(url, schema=schema)
    try:
        yield made
    finally:
        await made.aclose()
        if schema:
            await drop_schema(url, schema)

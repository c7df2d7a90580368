"""Opening a ledger from the strings the store accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.budgets import (
    MemoryBudgetLedger,
    PostgresBudgetLedger,
    SQLiteBudgetLedger,
    open_budget_ledger,
)
from keel.errors import ConfigurationError


@pytest.mark.parametrize("target", ["memory", "memory://", ":memory:"])
def test_memory(target: str) -> None:
    assert isinstance(open_budget_ledger(target), MemoryBudgetLedger)


def test_sqlite_paths(tmp_path: Path) -> None:
    assert isinstance(open_budget_ledger(tmp_path / "keel.db"), SQLiteBudgetLedger)
    assert repr(open_budget_ledger(f"sqlite:///{tmp_path}/k.db")) == (
        f"SQLiteBudgetLedger('/{tmp_path}/k.db')"
    )


def test_postgres_takes_the_schema_and_hides_the_password() -> None:
    ledger = open_budget_ledger("postgresql://u:hunter2@127.0.0.1:5/db", schema="s1")
    assert isinstance(ledger, PostgresBudgetLedger)
    assert "hunter2" not in repr(ledger)
    assert "s1" in repr(ledger)


def test_unknown_schemes_and_bad_schemas_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown scheme 'redis://'") as caught:
        open_budget_ledger("redis://u:hunter2@host/0")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="plain identifier"):
        open_budget_ledger("postgresql://127.0.0.1/db", schema="a-b")


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    from keel.errors import StoreError

    ledger = PostgresBudgetLedger(
        "postgresql://u:hunter2@127.0.0.1:1/db", connect_timeout_s=1, reconnect_timeout_s=0
    )
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1/db") as caught:
        await ledger.reservations()
    assert "hunter2" not in str(caught.value)
    await ledger.aclose()


def test_the_schema_is_ignored_where_it_does_not_apply(tmp_path: Path) -> None:
    from keel.budgets import MemoryBudgetLedger, SQLiteBudgetLedger

    assert isinstance(open_budget_ledger("memory", schema="keel"), MemoryBudgetLedger)
    opened = open_budget_ledger(tmp_path / "keel.db", schema="keel")
    assert isinstance(opened, SQLiteBudgetLedger)

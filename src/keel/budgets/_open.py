"""Opening a ledger where the store lives: a path, ``sqlite:///path``, ``postgresql://...``
or ``memory`` (the strings :func:`keel.stores.open_store` accepts)."""

from __future__ import annotations

import os
from pathlib import Path

from keel._redact import redact_url
from keel.budgets._ledger import BudgetLedger
from keel.errors import ConfigurationError

__all__ = ["open_budget_ledger"]


def open_budget_ledger(
    target: str | os.PathLike[str], *, schema: str | None = None
) -> BudgetLedger:
    """A ledger for ``target``: ``memory`` (this process only), ``sqlite:///path`` or a file
    path (the store's file: its tables sit beside the store's), or ``postgresql://...``
    (``schema``: the store's schema, ``keel`` by default; ignored for the other targets, so
    ``open_budget_ledger(settings.db, schema=settings.db_schema)`` works for every one).
    Nothing connects until first use.
    """
    text = os.fspath(target)
    if text in ("memory", "memory://", ":memory:"):
        from keel.budgets._memory import MemoryBudgetLedger

        return MemoryBudgetLedger()
    if text.startswith(("postgres://", "postgresql://")):
        from keel.budgets._postgres import PostgresBudgetLedger

        return PostgresBudgetLedger(text, schema="keel" if schema is None else schema)
    if "://" in text and not text.startswith("sqlite://"):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"the budget ledger location {redact_url(text)!r} uses the unknown scheme "
            f"'{scheme}://'; use a file path, 'sqlite:///path/to/keel.db', "
            "'postgresql://user@host/db' or 'memory'"
        )
    from keel.budgets._sqlite import SQLiteBudgetLedger

    path = Path(text.removeprefix("sqlite://")) if "://" in text else Path(text)
    return SQLiteBudgetLedger(path)

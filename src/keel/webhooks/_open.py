"""Opening an outbox where Keel's store lives: the strings ``open_store`` takes."""

from __future__ import annotations

import os
from pathlib import Path

from keel._redact import redact_url
from keel.errors import ConfigurationError
from keel.ports import Store
from keel.webhooks._outbox import Outbox

__all__ = ["open_outbox"]


def open_outbox(
    target: str | os.PathLike[str], *, schema: str | None = None, store: Store | None = None
) -> Outbox:
    """The webhook outbox at ``target``: ``memory`` (this process; ``store`` is the memory
    store whose runs it watches), a file path or ``sqlite:///path`` (the store's file), or
    ``postgresql://...`` (``schema``: the store's, ``keel`` by default; ignored for the other
    targets). The SQL outboxes read the runs of the store in the same database, so they must
    be opened where the store is. Nothing connects until first use."""
    text = os.fspath(target)
    if text in ("memory", "memory://", ":memory:"):
        from keel.webhooks._memory import MemoryOutbox

        return MemoryOutbox(store)
    if text.startswith(("postgres://", "postgresql://")):
        from keel.webhooks._postgres import PostgresOutbox

        return PostgresOutbox(text, schema=schema or "keel")
    if "://" in text and not text.startswith("sqlite://"):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"the webhook outbox location {redact_url(text)!r} uses the unknown scheme "
            f"'{scheme}://'; use a file path, 'sqlite:///path/to/keel.db', "
            "'postgresql://user@host/db' or 'memory'"
        )
    from keel.webhooks._sqlite import SQLiteOutbox

    return SQLiteOutbox(Path(text.removeprefix("sqlite://")) if "://" in text else text)

"""The SQLite store's schema as numbered, forward-only migrations.

Each migration runs once, in order, inside the transaction that opens the store, and is recorded
in ``schema_migrations``. Never edit a released migration: add the next number. A database whose
highest version is above :data:`LATEST_VERSION` was written by a newer Keel and is refused.

The column types are the ones PostgreSQL also knows (``TEXT``, ``INTEGER``, ``REAL``); a
PostgreSQL dialect swaps ``INTEGER`` for ``BIGINT``, ``REAL`` for ``DOUBLE PRECISION``, drops
``WITHOUT ROWID`` (its heap plus primary-key index does the same job) and should declare the
text keys ``COLLATE "C"`` so that ``list_runs`` breaks ties by ``run_id`` in the same
(code point) order as SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    """One schema step: its number, a short name, and the statements it runs in order."""

    version: int
    name: str
    statements: tuple[str, ...]


# The bookkeeping table itself is created before any migration, so that the version check can
# run on a database that has never seen Keel.
CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)"""

_V1_RUNS = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    input TEXT NOT NULL,
    steps INTEGER NOT NULL,
    tool_calls INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL,
    output_preview TEXT,
    reason_code TEXT,
    reason TEXT,
    last_seq INTEGER NOT NULL
)"""

# Events and thread messages are clustered by the key they are always read by (one seek, then a
# sequential scan), which is what WITHOUT ROWID gives: a rowid table would add a second b-tree
# lookup per row on every load.
_V1_EVENTS = """
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID"""

_V1_THREAD_MESSAGES = """
CREATE TABLE thread_messages (
    thread_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    body TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)
) WITHOUT ROWID"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="journal",
        statements=(
            _V1_RUNS,
            # One index per listing: the leading column filters, the rest is the sort order, so
            # "newest first, limit N" reads N index entries instead of sorting the table.
            "CREATE INDEX runs_by_created ON runs (created_at, run_id)",
            "CREATE INDEX runs_by_thread ON runs (thread_id, created_at, run_id)",
            "CREATE INDEX runs_by_status ON runs (status, created_at, run_id)",
            _V1_EVENTS,
            _V1_THREAD_MESSAGES,
            # The foreign key's child side, so that a check against thread_messages.run_id
            # never scans the table.
            "CREATE INDEX thread_messages_by_run ON thread_messages (run_id)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

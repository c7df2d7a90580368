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

from keel.stores._sql.statements import Migration

__all__ = ["CREATE_MIGRATIONS_TABLE", "LATEST_VERSION", "MIGRATIONS", "Migration"]


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

# Version 2: leases and a durable per-thread message counter.
#
# A run's lease lives on its row, so that an append checks it in the same conditional UPDATE
# that checks the journal position (no extra statement on the hot path). ``lease_token`` stays
# when a lease is released: it is the last fencing token handed out, and the next holder gets
# one more. ALTER TABLE ... ADD COLUMN only rewrites the schema entry, not the rows.
#
# ``threads.last_seq`` is the highest sequence number ever given to a message of the thread.
# ``MAX(seq) + 1`` would hand the numbers of deleted messages out again, and a later run that
# recorded "my history ends at seq N" would then see someone else's messages. It starts from
# the messages already there.
_V2_THREADS = """
CREATE TABLE threads (
    thread_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID"""

# Version 3: the queue. ``holds_thread`` is kept from the run's record on every write: whether
# the run keeps its thread busy (later runs of the thread wait behind it). Runs that existed
# before held their thread while running, paused or awaiting approval. The partial indexes keep
# the queue's questions small: the runs holding a thread (exclusive starts, active_run, the
# "first in its thread" check of claims), and the queued and running runs, oldest first
# (claims). runs_running_by_thread answered the old "is a run of this thread running?" and is
# dropped: nothing reads it any more, and it cost every status change an index write.
_V3_CLAIMABLE = (
    "CREATE INDEX runs_claimable ON runs (created_at, run_id) WHERE status IN ('queued', 'running')"
)

# Version 4: decision history and feedback. ``tenant`` and ``user`` are kept from the run's
# record on every write, like the other summary columns; ``tools`` is the JSON array of the
# tool names the run called. ``run_tools`` holds one row per (tool, run), written by triggers
# when a run's ``tools`` change (rarely: a run calls a new tool), so no write path grows a
# statement; its key puts a tool's runs newest-first, so "runs that called refund" reads 50
# entries of it, not the runs table. Dated by the run's creation, like every listing.
#
# The indexes serve the filtered listings, newest first: the leading column filters, the rest
# is the order. The listing picks the most selective filter given (thread, user, tool,
# tenant, error, agent with one status, agent, status) and reads its index in order, testing
# the other filters on the rows it finds. Tenant, user and error are partial: runs without
# them add no entries.
_V4_RUN_TOOLS = """
CREATE TABLE run_tools (
    tool TEXT NOT NULL,
    created_at REAL NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    PRIMARY KEY (tool, created_at, run_id)
) WITHOUT ROWID"""
_V4_ADD_TOOLS = """
    INSERT OR IGNORE INTO run_tools (tool, created_at, run_id)
    SELECT value, new.created_at, new.run_id FROM json_each(new.tools);"""
_V4_TOOLS_INSERTED = (
    "CREATE TRIGGER runs_tools_inserted AFTER INSERT ON runs WHEN new.tools <> '[]' BEGIN"
    + _V4_ADD_TOOLS
    + "\nEND"
)
_V4_TOOLS_UPDATED = (
    "CREATE TRIGGER runs_tools_updated AFTER UPDATE OF tools ON runs "
    "WHEN new.tools <> old.tools BEGIN" + _V4_ADD_TOOLS + "\nEND"
)
# A run's creation time is kept from its record too (an import may set it again).
_V4_CREATED_UPDATED = """
CREATE TRIGGER runs_created_updated AFTER UPDATE OF created_at ON runs
WHEN new.created_at <> old.created_at BEGIN
    UPDATE run_tools SET created_at = new.created_at WHERE run_id = new.run_id;
END"""
_V4_FEEDBACK = """
CREATE TABLE feedback (
    feedback_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    step INTEGER,
    score REAL,
    label TEXT,
    comment TEXT,
    given_by TEXT,
    at REAL NOT NULL
)"""
V4_STATEMENTS = (
    "ALTER TABLE runs ADD COLUMN tenant TEXT",
    'ALTER TABLE runs ADD COLUMN "user" TEXT',
    "ALTER TABLE runs ADD COLUMN tools TEXT NOT NULL DEFAULT '[]'",
    "CREATE INDEX runs_by_agent ON runs (agent, created_at, run_id)",
    "CREATE INDEX runs_by_agent_status ON runs (agent, status, created_at, run_id)",
    "CREATE INDEX runs_by_tenant ON runs (tenant, created_at, run_id) WHERE tenant IS NOT NULL",
    'CREATE INDEX runs_by_user ON runs ("user", created_at, run_id) WHERE "user" IS NOT NULL',
    "CREATE INDEX runs_by_error ON runs (reason_code, created_at, run_id) "
    "WHERE reason_code IS NOT NULL",
    _V4_RUN_TOOLS,
    # The foreign key's child side, and "does this run call that tool" for other filters.
    "CREATE INDEX run_tools_by_run ON run_tools (run_id, tool)",
    _V4_TOOLS_INSERTED,
    _V4_TOOLS_UPDATED,
    _V4_CREATED_UPDATED,
    _V4_FEEDBACK,
    "CREATE INDEX feedback_by_run ON feedback (run_id, at)",
    "CREATE INDEX feedback_by_at ON feedback (at, feedback_id)",
    "CREATE INDEX feedback_by_label ON feedback (label, at) WHERE label IS NOT NULL",
)

# Version 5: idempotency keys. A key is unique within its tenant ("" for runs without one: a
# tenant is never empty) and written in the transaction that creates its run, so a request
# repeated after a crash finds the run the first one created. A separate table, not a column of
# runs: most runs have no key, and the runs table and its hot appends stay as they are. The
# index on run_id serves the foreign key and deletions.
_V5_RUN_KEYS = """
CREATE TABLE run_keys (
    tenant TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    PRIMARY KEY (tenant, idempotency_key)
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
    Migration(
        version=2,
        name="leases_and_threads",
        statements=(
            "ALTER TABLE runs ADD COLUMN lease_owner TEXT",
            "ALTER TABLE runs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE runs ADD COLUMN lease_expires_at REAL",
            _V2_THREADS,
            "INSERT INTO threads (thread_id, last_seq) "
            "SELECT thread_id, MAX(seq) FROM thread_messages GROUP BY thread_id",
            # The running runs of a thread, newest first: the exclusivity check of start_run and
            # active_run read one entry, however many finished runs the thread has. Partial, so
            # it holds only the few running runs and appends that keep the status never touch it.
            "CREATE INDEX runs_running_by_thread ON runs (thread_id, created_at, run_id) "
            "WHERE status = 'running'",
        ),
    ),
    Migration(
        version=3,
        name="queue",
        statements=(
            "ALTER TABLE runs ADD COLUMN holds_thread INTEGER NOT NULL DEFAULT 0",
            "UPDATE runs SET holds_thread = 1 "
            "WHERE status IN ('running', 'paused', 'awaiting_approval')",
            "DROP INDEX runs_running_by_thread",
            # Ordered by rowid within a thread (an index entry ends with its rowid): the order
            # the runs arrived in, which is the thread's order.
            "CREATE INDEX runs_holding_thread ON runs (thread_id) WHERE holds_thread",
            _V3_CLAIMABLE,
        ),
    ),
    Migration(version=4, name="history_and_feedback", statements=V4_STATEMENTS),
    Migration(
        version=5,
        name="idempotency_keys",
        statements=(_V5_RUN_KEYS, "CREATE INDEX run_keys_by_run ON run_keys (run_id)"),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

# --- bookkeeping ------------------------------------------------------------------------------

HAS_MIGRATIONS_TABLE = (
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
)
SELECT_SCHEMA_VERSION = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
INSERT_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"

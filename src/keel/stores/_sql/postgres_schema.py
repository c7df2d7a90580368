"""The PostgreSQL store's schema as numbered, forward-only migrations.

The same rules as :mod:`keel.stores._sqlite_schema`: each migration runs once, in order, in
one transaction, recorded in ``schema_migrations``; never edit a released migration, add the
next number; a schema whose highest version is above :data:`LATEST_VERSION` is refused. The
numbers mean the same schema on both dialects: PostgreSQL support started at version 1 with the
whole of what SQLite reached in two steps (journal, leases, thread counters), so it has no
version 2, and version 3 (the queue) is the same step on both.

Every statement names its tables as ``{schema}.table``; the store fills ``{schema}`` in with
a quoted identifier (:class:`psycopg.sql.Identifier`), so nothing depends on ``search_path``,
which a connection pooler in transaction mode does not keep.

The types are SQLite's, translated: ``BIGINT`` for ``INTEGER``, ``DOUBLE PRECISION`` for
``REAL``. The text keys are ``COLLATE "C"`` so that ``list_runs`` breaks ties by ``run_id`` in
code point order, as SQLite does, whatever the database's default collation. Bodies are
``TEXT`` holding the codec's JSON, not ``JSONB``: JSONB rejects ``\\u0000``, reorders keys and
normalises numbers, and the store compares the stored text byte for byte when it checks
whether an append interrupted by a lost connection was committed.
"""

from __future__ import annotations

from keel.stores._sql.statements import Migration

__all__ = ["CREATE_MIGRATIONS_TABLE", "LATEST_VERSION", "MIGRATIONS"]

# Created before any migration, so that the version check can run on an empty schema.
CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)"""

# fillfactor 70: every append updates its run's row, and leaving room on each page lets
# PostgreSQL make those HOT updates (a new row version on the same page, no index entries
# written), since an append changes no indexed column.
_V1_RUNS = """
CREATE TABLE {schema}.runs (
    run_id TEXT COLLATE "C" PRIMARY KEY,
    thread_id TEXT COLLATE "C" NOT NULL,
    agent TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    input TEXT NOT NULL,
    steps BIGINT NOT NULL,
    tool_calls BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION,
    output_preview TEXT,
    reason_code TEXT,
    reason TEXT,
    last_seq BIGINT NOT NULL,
    lease_owner TEXT,
    lease_token BIGINT NOT NULL DEFAULT 0,
    lease_expires_at DOUBLE PRECISION
) WITH (fillfactor = 70)"""

_V1_EVENTS = """
CREATE TABLE {schema}.events (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES {schema}.runs (run_id),
    seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
)"""

# The highest sequence number ever given to a message of the thread; the row is also what
# concurrent appends of one thread's messages lock to take their numbers in turn.
_V1_THREADS = """
CREATE TABLE {schema}.threads (
    thread_id TEXT COLLATE "C" PRIMARY KEY,
    last_seq BIGINT NOT NULL
)"""

_V1_THREAD_MESSAGES = """
CREATE TABLE {schema}.thread_messages (
    thread_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL REFERENCES {schema}.runs (run_id),
    body TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)
)"""

# Version 3: the queue, as in SQLite (see keel.stores._sql.sqlite_schema): holds_thread, kept
# from the run's record on every write, run_no, the order runs arrived in (SQLite's rowid does
# that job there), and partial indexes for the runs holding a thread and for the queued and
# running runs. The old index of running runs is dropped.
_V3 = (
    "ALTER TABLE {schema}.runs ADD COLUMN holds_thread BOOLEAN NOT NULL DEFAULT false",
    "ALTER TABLE {schema}.runs ADD COLUMN run_no BIGINT GENERATED ALWAYS AS IDENTITY",
    "UPDATE {schema}.runs SET holds_thread = true "
    "WHERE status IN ('running', 'paused', 'awaiting_approval')",
    "DROP INDEX {schema}.runs_running_by_thread",
    "CREATE INDEX runs_holding_thread ON {schema}.runs (thread_id, run_no) WHERE holds_thread",
    "CREATE INDEX runs_claimable ON {schema}.runs (created_at, run_id) "
    "WHERE status IN ('queued', 'running')",
)

# Version 4: decision history and feedback, as in SQLite (see keel.stores._sql.sqlite_schema).
# ``run_tools`` is kept by triggers; each fires only when a run's ``tools`` (or creation time)
# changed, so an append that calls no new tool runs no trigger function, and stays a HOT
# update (``tools`` is not indexed).
_V4_RUN_TOOLS = """
CREATE TABLE {schema}.run_tools (
    tool TEXT COLLATE "C" NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL REFERENCES {schema}.runs (run_id),
    PRIMARY KEY (tool, created_at, run_id)
)"""
_V4_TRIGGER_FUNCTION = """
CREATE FUNCTION {schema}.keel_run_tools() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        UPDATE {schema}.run_tools SET created_at = NEW.created_at WHERE run_id = NEW.run_id;
    END IF;
    INSERT INTO {schema}.run_tools (tool, created_at, run_id)
    SELECT t, NEW.created_at, NEW.run_id FROM json_array_elements_text(NEW.tools::json) AS t
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$"""
_V4_FEEDBACK = """
CREATE TABLE {schema}.feedback (
    feedback_id TEXT COLLATE "C" PRIMARY KEY,
    run_id TEXT COLLATE "C" NOT NULL REFERENCES {schema}.runs (run_id),
    step BIGINT,
    score DOUBLE PRECISION,
    label TEXT,
    comment TEXT,
    given_by TEXT,
    at DOUBLE PRECISION NOT NULL
)"""
_V4 = (
    "ALTER TABLE {schema}.runs ADD COLUMN tenant TEXT",
    'ALTER TABLE {schema}.runs ADD COLUMN "user" TEXT',
    "ALTER TABLE {schema}.runs ADD COLUMN tools TEXT NOT NULL DEFAULT '[]'",
    "CREATE INDEX runs_by_agent ON {schema}.runs (agent, created_at, run_id)",
    "CREATE INDEX runs_by_agent_status ON {schema}.runs (agent, status, created_at, run_id)",
    "CREATE INDEX runs_by_tenant ON {schema}.runs (tenant, created_at, run_id) "
    "WHERE tenant IS NOT NULL",
    'CREATE INDEX runs_by_user ON {schema}.runs ("user", created_at, run_id) '
    'WHERE "user" IS NOT NULL',
    "CREATE INDEX runs_by_error ON {schema}.runs (reason_code, created_at, run_id) "
    "WHERE reason_code IS NOT NULL",
    _V4_RUN_TOOLS,
    "CREATE INDEX run_tools_by_run ON {schema}.run_tools (run_id, tool)",
    _V4_TRIGGER_FUNCTION,
    "CREATE TRIGGER runs_tools_inserted AFTER INSERT ON {schema}.runs FOR EACH ROW "
    "WHEN (NEW.tools <> '[]') EXECUTE FUNCTION {schema}.keel_run_tools()",
    "CREATE TRIGGER runs_tools_updated AFTER UPDATE OF tools, created_at ON {schema}.runs "
    "FOR EACH ROW WHEN (NEW.tools IS DISTINCT FROM OLD.tools "
    "OR NEW.created_at IS DISTINCT FROM OLD.created_at) "
    "EXECUTE FUNCTION {schema}.keel_run_tools()",
    _V4_FEEDBACK,
    "CREATE INDEX feedback_by_run ON {schema}.feedback (run_id, at)",
    "CREATE INDEX feedback_by_at ON {schema}.feedback (at, feedback_id)",
    "CREATE INDEX feedback_by_label ON {schema}.feedback (label, at) WHERE label IS NOT NULL",
)

# Version 5: idempotency keys, as in SQLite (see keel.stores._sql.sqlite_schema). Of two
# transactions inserting one key, the second waits on the primary key for the first to commit,
# then inserts nothing and rolls its run back.
_V5_RUN_KEYS = """
CREATE TABLE {schema}.run_keys (
    tenant TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL REFERENCES {schema}.runs (run_id),
    PRIMARY KEY (tenant, idempotency_key)
)"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="journal",
        statements=(
            _V1_RUNS,
            # One index per listing, as in SQLite: the leading column filters, the rest is the
            # sort order, so "newest first, limit N" reads N index entries.
            "CREATE INDEX runs_by_created ON {schema}.runs (created_at, run_id)",
            "CREATE INDEX runs_by_thread ON {schema}.runs (thread_id, created_at, run_id)",
            "CREATE INDEX runs_by_status ON {schema}.runs (status, created_at, run_id)",
            # The running runs of a thread: start_run's exclusivity check and active_run.
            "CREATE INDEX runs_running_by_thread ON {schema}.runs (thread_id, created_at, run_id)"
            " WHERE status = 'running'",
            _V1_EVENTS,
            _V1_THREADS,
            _V1_THREAD_MESSAGES,
            # The foreign key's child side: deleting a run finds its messages without a scan.
            "CREATE INDEX thread_messages_by_run ON {schema}.thread_messages (run_id)",
        ),
    ),
    # Version 2 is SQLite's leases and thread counters, which PostgreSQL's version 1 has.
    Migration(version=3, name="queue", statements=_V3),
    Migration(version=4, name="history_and_feedback", statements=_V4),
    Migration(
        version=5,
        name="idempotency_keys",
        statements=(_V5_RUN_KEYS, "CREATE INDEX run_keys_by_run ON {schema}.run_keys (run_id)"),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

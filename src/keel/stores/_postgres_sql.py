"""The PostgreSQL store's statements, as templates filled in once per store with its schema.

Every table is written ``{schema}.table``, and :class:`Statements` fills ``{schema}`` in with
the schema quoted as an identifier (:class:`psycopg.sql.Identifier`) and ``{now}`` with the
database's clock: nothing depends on ``search_path``, which a pooler in transaction mode does
not keep. Parameters are psycopg's ``%s`` and ``%(name)s``; the arrays of event and message
bodies are ``%(name)b``, sent in binary, because psycopg's text form of an array escapes each
JSON body character by character (it made an append about 450 µs slower).
"""

from __future__ import annotations

from psycopg import sql

from keel.stores._postgres_schema import CREATE_MIGRATIONS_TABLE

__all__ = ["LOCK", "RUN_COLUMNS", "SCHEMA_EXISTS", "Statements"]

# The database's clock, as seconds since the epoch (the unit of Lease.expires_at).
_NOW = "extract(epoch FROM clock_timestamp())::float8"

# --- statements -----------------------------------------------------------------------------
# Templates: {schema} becomes the quoted schema and {now} the clock expression, once, when the
# store is created. The append statement has variants (new run or not, under a lease or not,
# with thread messages or not), assembled below from named parts; everything else is spelled
# out in full.

RUN_COLUMNS = (
    "run_id",
    "thread_id",
    "agent",
    "model",
    "status",
    "created_at",
    "updated_at",
    "input",
    "steps",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "output_preview",
    "reason_code",
    "reason",
    "last_seq",
)
# A new run: inserted unless it exists (no row returned then).
_NEW_RUN = """
    INSERT INTO {schema}.runs (
        run_id, thread_id, agent, model, status, created_at, updated_at, input, steps,
        tool_calls, input_tokens, output_tokens, cost_usd, output_preview, reason_code, reason,
        last_seq
    ) VALUES (
        %(run_id)s, %(thread_id)s, %(agent)s, %(model)s, %(status)s, %(created_at)s,
        %(updated_at)s, %(input)s, %(steps)s, %(tool_calls)s, %(input_tokens)s,
        %(output_tokens)s, %(cost_usd)s, %(output_preview)s, %(reason_code)s, %(reason)s,
        %(last_seq)s
    )
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id"""
# An existing run, advanced only from the expected position (the UPDATE waits for the row lock
# of a concurrent append, then re-checks its WHERE clause on the row that one committed)...
_ADVANCE_RUN = """
    UPDATE {schema}.runs SET
        thread_id = %(thread_id)s, agent = %(agent)s, model = %(model)s,
        status = %(status)s, created_at = %(created_at)s, updated_at = %(updated_at)s,
        input = %(input)s, steps = %(steps)s, tool_calls = %(tool_calls)s,
        input_tokens = %(input_tokens)s, output_tokens = %(output_tokens)s,
        cost_usd = %(cost_usd)s, output_preview = %(output_preview)s,
        reason_code = %(reason_code)s, reason = %(reason)s, last_seq = %(last_seq)s
    WHERE run_id = %(run_id)s AND last_seq = %(expected_seq)s"""
# ... by a writer without a lease only while nobody holds an unexpired one ...
_NO_LIVE_LEASE = " AND (lease_owner IS NULL OR lease_expires_at <= {now}) RETURNING run_id"
# ... or by the holder of the current lease (expired or not: nobody took over).
_CURRENT_LEASE = (
    " AND lease_token = %(lease_token)s AND lease_owner = %(lease_owner)s RETURNING run_id"
)
_INSERT_EVENTS = """
    INSERT INTO {schema}.events (run_id, seq, type, at, body)
    SELECT run.run_id, %(expected_seq)s + e.n, e.type, e.at, e.body
    FROM run, unnest(%(types)b::text[], %(ats)b::float8[], %(bodies)b::text[])
        WITH ORDINALITY AS e (type, at, body, n)"""
# The thread's counter row is created or locked and advanced in one statement; its new value
# numbers the messages. Both select from `run`, so a refused append touches neither.
_RESERVE_THREAD_SEQS = """
    INSERT INTO {schema}.threads AS t (thread_id, last_seq)
    SELECT %(thread_id)s, %(message_count)s FROM run
    ON CONFLICT (thread_id) DO UPDATE SET last_seq = t.last_seq + excluded.last_seq
    RETURNING last_seq"""
_INSERT_THREAD_MESSAGES = """
    INSERT INTO {schema}.thread_messages (thread_id, seq, run_id, body)
    SELECT %(thread_id)s, thread.last_seq - %(message_count)s + m.n, %(run_id)s, m.body
    FROM thread, unnest(%(messages)b::text[]) WITH ORDINALITY AS m (body, n)"""


def _append_template(*, new: bool, leased: bool, messages: bool) -> str:
    run = _NEW_RUN if new else _ADVANCE_RUN + (_CURRENT_LEASE if leased else _NO_LIVE_LEASE)
    parts = [f"run AS ({run})", f"events AS ({_INSERT_EVENTS})"]
    if messages:
        parts += [f"thread AS ({_RESERVE_THREAD_SEQS})", f"messages AS ({_INSERT_THREAD_MESSAGES})"]
    return "WITH " + ",\n".join(parts) + "\nSELECT count(*) FROM run"


# A new run has no lease yet, so no variant is needed for (new=True, leased=True).
_APPENDS = {
    (new, leased, messages): _append_template(new=new, leased=leased, messages=messages)
    for new in (False, True)
    for leased in (False, True)
    for messages in (False, True)
    if not (new and leased)
}

_START_RUN = """
WITH run AS (
    INSERT INTO {schema}.runs (
        run_id, thread_id, agent, model, status, created_at, updated_at, input, steps,
        tool_calls, input_tokens, output_tokens, cost_usd, output_preview, reason_code, reason,
        last_seq,
        lease_owner, lease_token, lease_expires_at
    ) VALUES (
        %(run_id)s, %(thread_id)s, %(agent)s, %(model)s, %(status)s, %(created_at)s,
        %(updated_at)s, %(input)s, %(steps)s, %(tool_calls)s, %(input_tokens)s,
        %(output_tokens)s, %(cost_usd)s, %(output_preview)s, %(reason_code)s, %(reason)s,
        %(last_seq)s,
        %(lease_owner)s, 1, {now} + %(ttl)s
    )
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id, lease_expires_at
), events AS (
    INSERT INTO {schema}.events (run_id, seq, type, at, body)
    SELECT run.run_id, e.n, e.type, e.at, e.body
    FROM run, unnest(%(types)b::text[], %(ats)b::float8[], %(bodies)b::text[])
        WITH ORDINALITY AS e (type, at, body, n)
)
SELECT lease_expires_at FROM run"""
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_THREAD_LAST_SEQ = "SELECT last_seq FROM {schema}.threads WHERE thread_id = %s"
_OTHER_ACTIVE_RUN = """
SELECT run_id FROM {schema}.runs WHERE thread_id = %s AND status = 'running' AND run_id <> %s
ORDER BY created_at DESC, run_id DESC LIMIT 1"""
# The run's position and lease, and the clock, read together; no row for an unknown run.
_RUN_STATE = """
SELECT last_seq, lease_owner, lease_token, lease_expires_at, {now}
FROM {schema}.runs WHERE run_id = %s"""
_SELECT_NOW = "SELECT {now}"
_APPENDED_BODIES = """
SELECT body FROM {schema}.events WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s"""

# Free, expired or the owner's own (or forced): one UPDATE decides and writes. The owner
# re-acquiring its unexpired lease keeps the token; any other grant takes the next one.
_ACQUIRE_LEASE = """
UPDATE {schema}.runs SET
    lease_token = CASE
        WHEN NOT %(force)s AND lease_owner = %(owner)s AND lease_expires_at > {now}
        THEN lease_token ELSE lease_token + 1 END,
    lease_owner = %(owner)s,
    lease_expires_at = {now} + %(ttl)s
WHERE run_id = %(run_id)s
    AND (%(force)s OR lease_owner IS NULL OR lease_owner = %(owner)s
        OR lease_expires_at <= {now})
RETURNING lease_token, lease_expires_at"""
_RENEW_LEASE = """
UPDATE {schema}.runs SET lease_expires_at = {now} + %s
WHERE run_id = %s AND lease_token = %s AND lease_owner = %s
RETURNING lease_expires_at"""
_RELEASE_LEASE = """
UPDATE {schema}.runs SET lease_owner = NULL, lease_expires_at = NULL
WHERE run_id = %s AND lease_token = %s AND lease_owner = %s"""

_SELECT_EVENTS = "SELECT seq, body FROM {schema}.events WHERE run_id = %s ORDER BY seq"
_SELECT_RUNS = """
SELECT
    run_id, thread_id, agent, model, status, created_at, updated_at, input, steps, tool_calls,
    input_tokens, output_tokens, cost_usd, output_preview, reason_code, reason, last_seq
FROM {schema}.runs
"""
_SELECT_RUN = _SELECT_RUNS + "WHERE run_id = %s"
_LIST_RUNS: dict[tuple[bool, bool], str] = {
    (False, False): _SELECT_RUNS + "ORDER BY created_at DESC, run_id DESC LIMIT %s",
    (True, False): _SELECT_RUNS
    + "WHERE thread_id = %s ORDER BY created_at DESC, run_id DESC LIMIT %s",
    (False, True): _SELECT_RUNS
    + "WHERE status = %s ORDER BY created_at DESC, run_id DESC LIMIT %s",
    (True, True): _SELECT_RUNS
    + "WHERE thread_id = %s AND status = %s ORDER BY created_at DESC, run_id DESC LIMIT %s",
}
_RECOVERABLE_RUNS = (
    _SELECT_RUNS
    + "WHERE status = 'running' AND (lease_owner IS NULL OR lease_expires_at <= {now}) "
    + "ORDER BY created_at, run_id LIMIT %s"
)
_ACTIVE_RUN = (
    _SELECT_RUNS
    + "WHERE thread_id = %s AND status = 'running' ORDER BY created_at DESC, run_id DESC LIMIT 1"
)
_THREAD_HISTORY = """
SELECT t.last_seq, m.seq, m.body
FROM {schema}.threads AS t
    LEFT JOIN {schema}.thread_messages AS m ON m.thread_id = t.thread_id AND m.seq <= %s
WHERE t.thread_id = %s
ORDER BY m.seq"""

# Deletion locks the rows it is about to delete (in run_id order, so that two deletions cannot
# deadlock), so that no lease is taken between the check and the delete.
_LOCK_RUNS = """
SELECT run_id, lease_owner, lease_expires_at FROM {schema}.runs
WHERE run_id = ANY(%s::text[]) ORDER BY run_id FOR UPDATE"""
_LOCK_THREAD_RUNS = """
SELECT run_id, lease_owner, lease_expires_at FROM {schema}.runs
WHERE thread_id = %s ORDER BY run_id FOR UPDATE"""
# Retention skips rows another transaction holds: they are busy, and the next pass gets them.
_LOCK_OLD_RUNS = """
SELECT run_id FROM {schema}.runs
WHERE created_at < %s AND status <> 'running'
    AND (lease_owner IS NULL OR lease_expires_at <= {now})
ORDER BY run_id FOR UPDATE SKIP LOCKED"""
_DELETE_THREAD_MESSAGES_OF_RUNS = (
    "DELETE FROM {schema}.thread_messages WHERE run_id = ANY(%s::text[])"
)
_DELETE_EVENTS_OF_RUNS = "DELETE FROM {schema}.events WHERE run_id = ANY(%s::text[])"
_DELETE_RUNS = "DELETE FROM {schema}.runs WHERE run_id = ANY(%s::text[])"
_DELETE_THREAD_MESSAGES = "DELETE FROM {schema}.thread_messages WHERE thread_id = %s"

SCHEMA_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
_CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
_SELECT_SCHEMA_VERSION = "SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_migrations"
_INSERT_MIGRATION = """
INSERT INTO {schema}.schema_migrations (version, name, applied_at) VALUES (%s, %s, {now})"""


class Statements:
    """The statements with one schema's name filled in, rendered once per store."""

    def __init__(self, schema: str) -> None:
        identifier = sql.Identifier(schema)
        self.qualified_migrations_table = identifier.as_string(None) + ".schema_migrations"

        def render(template: str) -> str:
            # Templates are module constants; only the schema, validated and quoted as an
            # identifier, is filled in.
            composed = sql.SQL(template).format(schema=identifier, now=sql.SQL(_NOW))
            return composed.as_string(None)

        self.render = render
        self.appends = {key: render(template) for key, template in _APPENDS.items()}
        self.start_run = render(_START_RUN)
        self.other_active_run = render(_OTHER_ACTIVE_RUN)
        self.thread_last_seq = render(_THREAD_LAST_SEQ)
        self.run_state = render(_RUN_STATE)
        self.select_now = render(_SELECT_NOW)
        self.appended_bodies = render(_APPENDED_BODIES)
        self.acquire_lease = render(_ACQUIRE_LEASE)
        self.renew_lease = render(_RENEW_LEASE)
        self.release_lease = render(_RELEASE_LEASE)
        self.select_events = render(_SELECT_EVENTS)
        self.select_run = render(_SELECT_RUN)
        self.list_runs = {key: render(template) for key, template in _LIST_RUNS.items()}
        self.recoverable_runs = render(_RECOVERABLE_RUNS)
        self.active_run = render(_ACTIVE_RUN)
        self.thread_history = render(_THREAD_HISTORY)
        self.lock_runs = render(_LOCK_RUNS)
        self.lock_thread_runs = render(_LOCK_THREAD_RUNS)
        self.lock_old_runs = render(_LOCK_OLD_RUNS)
        self.delete_thread_messages_of_runs = render(_DELETE_THREAD_MESSAGES_OF_RUNS)
        self.delete_events_of_runs = render(_DELETE_EVENTS_OF_RUNS)
        self.delete_runs = render(_DELETE_RUNS)
        self.delete_thread_messages = render(_DELETE_THREAD_MESSAGES)
        self.create_schema = render(_CREATE_SCHEMA)
        self.create_migrations_table = render(CREATE_MIGRATIONS_TABLE)
        self.select_schema_version = render(_SELECT_SCHEMA_VERSION)
        self.insert_migration = render(_INSERT_MIGRATION)

"""The PostgreSQL ledger's tables and the functions it installs in its schema.

``reserve``, ``settle`` and ``release_run`` are each one call of a plpgsql function, so each
is one statement, one transaction and one round trip, however many budgets it touches. The
functions follow the rules of :mod:`._logic` (the contract suite runs on both):

- Reserves of one reservation id take turns (a transaction-level advisory lock on the id), so
  a resumed run racing its old process still reserves once.
- Every usage row a call changes is first created if missing, then locked, always in the same
  order (scope, key, window, window start) and all at once, the rows of a settlement that
  rides along included: two calls never hold rows the other waits for, so they cannot
  deadlock. Spend is then read under those locks, so no two processes can both see room for
  the last dollar.

``{schema}`` is replaced by the quoted schema name. Bump the ``_v1`` suffix when a function's
behaviour changes: processes of the old and the new Keel may share a schema for a while.
"""

from __future__ import annotations

__all__ = [
    "INSTALL",
    "LIMITS_AND_USAGE",
    "RELEASE",
    "REMOVE_LIMIT",
    "RESERVATIONS",
    "RESERVE",
    "SETTLE",
    "SET_LIMIT",
]

_TABLES = (
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """CREATE TABLE IF NOT EXISTS {schema}.budget_limits (
        scope text NOT NULL, key text NOT NULL, period text NOT NULL,
        limit_nanos bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (scope, key))""",
    """CREATE TABLE IF NOT EXISTS {schema}.budget_usage (
        scope text NOT NULL, key text NOT NULL, period text NOT NULL,
        window_start double precision NOT NULL,
        spent_nanos bigint NOT NULL DEFAULT 0, reserved_nanos bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, key, period, window_start))""",
    """CREATE TABLE IF NOT EXISTS {schema}.budget_reservations (
        reservation_id text PRIMARY KEY, run_id text NOT NULL, amount_nanos bigint NOT NULL,
        created_at double precision NOT NULL, settled boolean NOT NULL DEFAULT false,
        actual_nanos bigint, settled_at double precision, charges jsonb NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS budget_reservations_unsettled
        ON {schema}.budget_reservations (run_id) WHERE NOT settled""",
)

# Creates the usage rows named by the jsonb array ``rows`` ([scope, key, period, start]) and
# locks them, in one fixed order.
_LOCK_ROWS = """
CREATE OR REPLACE FUNCTION {schema}.keel_budget_lock_v1(v_rows jsonb) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO {schema}.budget_usage AS u (scope, key, period, window_start)
    SELECT DISTINCT e->>0, e->>1, e->>2, (e->>3)::double precision
    FROM jsonb_array_elements(v_rows) e ORDER BY 1, 2, 3, 4
    ON CONFLICT DO NOTHING;
  PERFORM 1 FROM {schema}.budget_usage u
    JOIN jsonb_array_elements(v_rows) e
      ON u.scope = e->>0 AND u.key = e->>1 AND u.period = e->>2
     AND u.window_start = (e->>3)::double precision
    ORDER BY u.scope, u.key, u.period, u.window_start
    FOR UPDATE OF u;
END $fn$
"""

# Adds to the spent and reserved amounts of the (locked) rows named by ``rows``.
_ADD = """
CREATE OR REPLACE FUNCTION {schema}.keel_budget_add_v1(
  v_rows jsonb, v_spent bigint, v_reserved bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE {schema}.budget_usage u
    SET spent_nanos = u.spent_nanos + v_spent, reserved_nanos = u.reserved_nanos + v_reserved
    FROM jsonb_array_elements(v_rows) e
    WHERE u.scope = e->>0 AND u.key = e->>1 AND u.period = e->>2
      AND u.window_start = (e->>3)::double precision;
END $fn$
"""

_RESERVE_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.keel_budget_reserve_v1(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  v_rid text := p->>'id';
  v_amount bigint := (p->>'amount')::bigint;
  v_prev {schema}.budget_reservations;
  v_found {schema}.budget_reservations;
  v_picked jsonb := '[]'::jsonb;
  v_charges jsonb;
  v_c jsonb;
  v_limit bigint;
  v_period text;
  v_bad record;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('keel:budget:' || v_rid, 0));
  IF p->>'settle_id' IS NOT NULL THEN
    SELECT * INTO v_prev FROM {schema}.budget_reservations
      WHERE reservation_id = p->>'settle_id' AND NOT settled FOR UPDATE;
  END IF;
  SELECT * INTO v_found FROM {schema}.budget_reservations WHERE reservation_id = v_rid;
  IF v_found.reservation_id IS NULL THEN
    -- Which budget applies to each key: a stored limit, else the code budget sent.
    FOR v_c IN SELECT value FROM jsonb_array_elements(p->'candidates') LOOP
      SELECT l.limit_nanos, l.period INTO v_limit, v_period FROM {schema}.budget_limits l
        WHERE l.scope = v_c->>'scope' AND l.key = v_c->>'key';
      IF FOUND THEN
        v_picked := v_picked || jsonb_build_array(jsonb_build_array(
          v_c->>'scope', v_c->>'key', v_period, p->'starts'->v_period, v_limit, 'stored'));
      ELSIF v_c->>'limit' IS NOT NULL THEN
        v_picked := v_picked || jsonb_build_array(jsonb_build_array(
          v_c->>'scope', v_c->>'key', v_c->>'window', p->'starts'->(v_c->>'window'),
          (v_c->>'limit')::bigint, 'code'));
      END IF;
    END LOOP;
  END IF;
  PERFORM {schema}.keel_budget_lock_v1(v_picked || COALESCE(v_prev.charges, '[]'::jsonb));
  IF v_prev.reservation_id IS NOT NULL THEN
    PERFORM {schema}.keel_budget_add_v1(
      v_prev.charges, (p->>'actual')::bigint, -v_prev.amount_nanos);
    UPDATE {schema}.budget_reservations
      SET settled = true, actual_nanos = (p->>'actual')::bigint,
          settled_at = (p->>'now')::double precision
      WHERE reservation_id = v_prev.reservation_id;
  END IF;
  IF v_found.reservation_id IS NOT NULL THEN
    RETURN jsonb_build_object('status', 'existing', 'run', v_found.run_id,
      'amount', v_found.amount_nanos, 'settled', v_found.settled, 'charges', v_found.charges);
  END IF;
  SELECT x.e, u.spent_nanos, u.reserved_nanos INTO v_bad
    FROM jsonb_array_elements(v_picked) WITH ORDINALITY AS x(e, n)
    JOIN {schema}.budget_usage u
      ON u.scope = x.e->>0 AND u.key = x.e->>1 AND u.period = x.e->>2
     AND u.window_start = (x.e->>3)::double precision
    WHERE u.spent_nanos + u.reserved_nanos + v_amount > (x.e->>4)::bigint
    ORDER BY x.n LIMIT 1;
  IF FOUND THEN
    RETURN jsonb_build_object('status', 'exhausted', 'budget', v_bad.e,
      'spent', v_bad.spent_nanos, 'reserved', v_bad.reserved_nanos);
  END IF;
  SELECT COALESCE(jsonb_agg(jsonb_build_array(e->0, e->1, e->2, e->3)), '[]'::jsonb)
    INTO v_charges FROM jsonb_array_elements(v_picked) e;
  PERFORM {schema}.keel_budget_add_v1(v_charges, 0, v_amount);
  INSERT INTO {schema}.budget_reservations
    (reservation_id, run_id, amount_nanos, created_at, charges)
    VALUES (v_rid, p->>'run', v_amount, (p->>'now')::double precision, v_charges);
  RETURN jsonb_build_object('status', 'reserved', 'charges', v_charges);
END $fn$
"""

_SETTLE_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.keel_budget_settle_v1(
  v_id text, v_actual bigint, v_now double precision) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
  v_prev {schema}.budget_reservations;
BEGIN
  SELECT * INTO v_prev FROM {schema}.budget_reservations
    WHERE reservation_id = v_id AND NOT settled FOR UPDATE;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  PERFORM {schema}.keel_budget_lock_v1(v_prev.charges);
  PERFORM {schema}.keel_budget_add_v1(v_prev.charges, v_actual, -v_prev.amount_nanos);
  UPDATE {schema}.budget_reservations
    SET settled = true, actual_nanos = v_actual, settled_at = v_now
    WHERE reservation_id = v_id;
  RETURN true;
END $fn$
"""

_RELEASE_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.keel_budget_release_v1(v_run text) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
  v_row {schema}.budget_reservations;
  v_all jsonb := '[]'::jsonb;
  v_count integer := 0;
BEGIN
  FOR v_row IN SELECT * FROM {schema}.budget_reservations
      WHERE run_id = v_run AND NOT settled ORDER BY reservation_id FOR UPDATE LOOP
    v_all := v_all || v_row.charges;
  END LOOP;
  PERFORM {schema}.keel_budget_lock_v1(v_all);
  FOR v_row IN SELECT * FROM {schema}.budget_reservations
      WHERE run_id = v_run AND NOT settled ORDER BY reservation_id LOOP
    PERFORM {schema}.keel_budget_add_v1(v_row.charges, 0, -v_row.amount_nanos);
    DELETE FROM {schema}.budget_reservations WHERE reservation_id = v_row.reservation_id;
    v_count := v_count + 1;
  END LOOP;
  RETURN v_count;
END $fn$
"""

#: Statements that create the tables and functions, run once per process under a lock.
INSTALL = (*_TABLES, _LOCK_ROWS, _ADD, _RESERVE_FUNCTION, _SETTLE_FUNCTION, _RELEASE_FUNCTION)

RESERVE = "SELECT {schema}.keel_budget_reserve_v1(%s::jsonb)"
SETTLE = "SELECT {schema}.keel_budget_settle_v1(%s, %s, %s)"
RELEASE = "SELECT {schema}.keel_budget_release_v1(%s)"

SET_LIMIT = """INSERT INTO {schema}.budget_limits (scope, key, period, limit_nanos)
    VALUES (%s, %s, %s, %s) ON CONFLICT (scope, key) DO UPDATE SET
    period = excluded.period, limit_nanos = excluded.limit_nanos, updated_at = now()
    RETURNING 1"""
REMOVE_LIMIT = """WITH gone AS (
    DELETE FROM {schema}.budget_limits WHERE scope = %s AND key = %s RETURNING 1)
    SELECT count(*) FROM gone"""
# One statement: the stored limits (kind 'limit') and the usage rows of the current windows.
LIMITS_AND_USAGE = """SELECT 'limit', scope, key, period, limit_nanos, 0, 0
    FROM {schema}.budget_limits
    UNION ALL SELECT 'usage', scope, key, period, spent_nanos, reserved_nanos, window_start
    FROM {schema}.budget_usage u WHERE (u.period, u.window_start) IN
    (SELECT * FROM unnest(%s::text[], %s::double precision[]))"""
RESERVATIONS = """SELECT reservation_id, run_id, amount_nanos, created_at, charges
    FROM {schema}.budget_reservations WHERE NOT settled
    AND (%s::text IS NULL OR run_id = %s) ORDER BY created_at, reservation_id"""

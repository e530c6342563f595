/**
 * Every SQL text the Postgres store sends, in one place. Each store operation is one
 * statement (one round trip); times are read from the database clock as epoch ms.
 *
 * The records table (`"schema"."table"`), at schema version 3:
 *
 * ```
 * id               text PRIMARY KEY   a hash of scope + key
 * state            text               'in_progress' | 'completed'
 * fingerprint      text               fixed at claim time
 * token            text               the holder's fencing token; '' when released
 * attempt          integer            1, +1 per takeover; 0 for a released marker
 * lease_until      bigint             0 once completed
 * expires_at       bigint             past it the record no longer counts
 * outcome          text               NULL while in progress (JSON-escaped when outcome_escaped)
 * outcome_escaped  boolean
 * awaited          boolean            someone waits: complete/release NOTIFY
 * created_at       bigint             (v3) set by the claim that creates the record (absent or
 *                                     expired key), kept by takeovers, renewals, releases into a
 *                                     marker, re-taking it and complete; 0 for older rows
 * completed_at     bigint             (v3) set by complete; 0 otherwise
 * scope            text               (v3) the claim's scopeHash, kept like created_at; '' when none
 * ```
 *
 * The three version 3 columns are for `inspect` only; no transition reads them.
 *
 * @module
 */

/** The database clock as epoch milliseconds. The app's clock is never used for records. */
export const NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** Schema versions in order; `MIGRATIONS[i]` brings the schema from version i to i + 1. */
export function migrations(schema: string, table: string): string[][] {
  const t = `"${schema}"."${table}"`;
  return [
    [
      `CREATE SCHEMA IF NOT EXISTS "${schema}"`,
      `CREATE TABLE IF NOT EXISTS "${schema}"."${table}_version" (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now())`,
      `CREATE TABLE IF NOT EXISTS ${t} (
        id text PRIMARY KEY,
        state text NOT NULL CHECK (state IN ('in_progress', 'completed')),
        fingerprint text NOT NULL,
        token text NOT NULL,
        attempt integer NOT NULL,
        lease_until bigint NOT NULL,
        expires_at bigint NOT NULL,
        outcome text,
        outcome_escaped boolean NOT NULL DEFAULT false,
        awaited boolean NOT NULL DEFAULT false)`,
      `CREATE INDEX IF NOT EXISTS "${table}_expires_at" ON ${t} (expires_at)`,
    ],
    // 2: in-progress retention counts from the lease end (leaseUntil + max(lease, ttl)). This
    // step replaced the claim function; 3 replaces it again in the same transaction (every
    // upgrade runs to the current version at once), so it has nothing left to do.
    [],
    // 3: created_at, completed_at and scope for inspect (constant defaults: no table rewrite;
    // older rows read 0, 0 and ''), the claim with a sixth parameter p_scope, and the five-
    // parameter claim kept as an overload for processes still running the previous idem.
    [
      `ALTER TABLE ${t}
        ADD COLUMN created_at bigint NOT NULL DEFAULT 0,
        ADD COLUMN completed_at bigint NOT NULL DEFAULT 0,
        ADD COLUMN scope text NOT NULL DEFAULT ''`,
      claimFunction(schema, table),
      legacyClaimFunction(schema, table),
    ],
  ];
}

/**
 * The claim, as one function so it stays one round trip and reads the row that blocks it
 * with a fresh snapshot (a plain CTE could not see a row committed by a concurrent claimer).
 *
 * 1. Read the row. Completed, live lease, or another fingerprint: answer it, with no write
 *    and no lock, except that the first claimer to find a holder marks the row `awaited`,
 *    so the holder's complete/release sends a NOTIFY (NOTIFY serializes commits cluster-wide,
 *    so records nobody waits on never send one).
 * 2. Otherwise upsert: insert, or overwrite when expired (attempt 1) or when the lease ran
 *    out with the same fingerprint (takeover: attempt + 1), re-checked under the row lock.
 *    The record is kept until leaseUntil + max(lease, ttl); a takeover keeps a later expiry.
 *    A new or replaced record gets created_at = now and scope = p_scope; a takeover (and the
 *    re-take of a released marker) keeps both.
 * 3. The upsert lost to a concurrent claimer: go back to 1, which now sees its row.
 *
 * p_scope has no default on purpose: the five-parameter overload below still exists, and a
 * default would make a five-argument call ambiguous between the two.
 */
function claimFunction(schema: string, table: string): string {
  const t = `"${schema}"."${table}"`;
  return `CREATE OR REPLACE FUNCTION "${schema}"."${table}_claim"(
    p_id text, p_fingerprint text, p_token text, p_lease_ms bigint, p_ttl_ms bigint, p_scope text)
  RETURNS TABLE (acquired boolean, state text, fingerprint text, token text, attempt integer,
    lease_until bigint, expires_at bigint, outcome text, outcome_escaped boolean, now_ms bigint)
  LANGUAGE plpgsql VOLATILE AS $fn$
  #variable_conflict use_column
  DECLARE
    t bigint := ${NOW_MS};
    r ${t}%ROWTYPE;
  BEGIN
    FOR i IN 1..10 LOOP
      SELECT * INTO r FROM ${t} x WHERE x.id = p_id;
      IF FOUND AND r.expires_at > t
        AND (r.state = 'completed' OR r.lease_until > t OR r.fingerprint <> p_fingerprint) THEN
        IF r.state = 'in_progress' AND NOT r.awaited THEN
          -- someone waits on this holder: its complete/release will NOTIFY
          UPDATE ${t} x SET awaited = true
          WHERE x.id = p_id AND x.token = r.token AND x.state = 'in_progress' AND NOT x.awaited;
          CONTINUE WHEN NOT FOUND; -- changed under us: read it again
          r.awaited := true;
        END IF;
        RETURN QUERY SELECT false, r.state, r.fingerprint, r.token, r.attempt, r.lease_until,
          r.expires_at, r.outcome, r.outcome_escaped, t;
        RETURN;
      END IF;
      INSERT INTO ${t} AS x (id, state, fingerprint, token, attempt, lease_until, expires_at,
        created_at, completed_at, scope)
      VALUES (p_id, 'in_progress', p_fingerprint, p_token, 1, t + p_lease_ms,
        t + p_lease_ms + greatest(p_lease_ms, p_ttl_ms), t, 0, coalesce(p_scope, ''))
      ON CONFLICT (id) DO UPDATE SET
        state = 'in_progress',
        fingerprint = excluded.fingerprint,
        token = excluded.token,
        attempt = CASE WHEN x.expires_at <= t THEN 1 ELSE x.attempt + 1 END,
        lease_until = excluded.lease_until,
        expires_at = CASE WHEN x.expires_at <= t THEN excluded.expires_at
                          ELSE greatest(x.expires_at, excluded.expires_at) END,
        outcome = NULL,
        outcome_escaped = false,
        awaited = CASE WHEN x.expires_at <= t THEN false ELSE x.awaited END,
        created_at = CASE WHEN x.expires_at <= t THEN excluded.created_at ELSE x.created_at END,
        completed_at = 0,
        scope = CASE WHEN x.expires_at <= t THEN excluded.scope ELSE x.scope END
      WHERE x.expires_at <= t
         OR (x.state = 'in_progress' AND x.lease_until <= t AND x.fingerprint = excluded.fingerprint)
      RETURNING x.* INTO r;
      IF FOUND THEN
        RETURN QUERY SELECT true, r.state, r.fingerprint, r.token, r.attempt, r.lease_until,
          r.expires_at, NULL::text, false, t;
        RETURN;
      END IF;
    END LOOP;
    RAISE EXCEPTION 'idem: the claim on % kept changing under concurrent writers', p_id;
  END
  $fn$`;
}

/**
 * The claim of schema versions 1 and 2, five parameters, kept for a rolling upgrade: a process
 * still running the previous idem (it found version 2 when it started, so it never migrates
 * again) keeps calling this signature after another process migrated to 3. Rather than dropping
 * it, version 3 replaces its body with a call of the six-parameter claim with no scope, so those
 * processes keep claiming with exactly the current semantics and their new records still get
 * created_at (their completes leave completed_at 0, "unknown"). Same name, parameters and result
 * columns as before, so CREATE OR REPLACE keeps it (and its grants), and prepared statements of
 * running processes stay valid.
 */
function legacyClaimFunction(schema: string, table: string): string {
  return `CREATE OR REPLACE FUNCTION "${schema}"."${table}_claim"(
    p_id text, p_fingerprint text, p_token text, p_lease_ms bigint, p_ttl_ms bigint)
  RETURNS TABLE (acquired boolean, state text, fingerprint text, token text, attempt integer,
    lease_until bigint, expires_at bigint, outcome text, outcome_escaped boolean, now_ms bigint)
  LANGUAGE sql VOLATILE AS $fn$
    SELECT * FROM "${schema}"."${table}_claim"(p_id, p_fingerprint, p_token, p_lease_ms, p_ttl_ms, ''::text)
  $fn$`;
}

/** The columns `list` and `inspectGet` answer (outcome size instead of outcome), named, not r.*. */
const LISTED = `r.id, r.state, r.fingerprint, r.token, r.attempt, r.lease_until, r.expires_at,
        coalesce(octet_length(r.outcome), 0) AS bytes, r.created_at, r.completed_at, r.scope`;

/** The statement behind each store operation. `channel` is the LISTEN/NOTIFY channel. */
export function statements(schema: string, table: string, channel: string) {
  const t = `"${schema}"."${table}"`;
  // NOTIFY takes a cluster-wide lock at commit, so only records someone waits on notify
  const notify = (alias: string) =>
    `CASE WHEN ${alias}.awaited AND octet_length(${alias}.id) < 8000 THEN pg_notify('${channel}', ${alias}.id) END`;
  return {
    // $1 id, $2 fingerprint, $3 token, $4 lease ms, $5 ttl ms, $6 scope hash ('' when none)
    claim: `SELECT * FROM "${schema}"."${table}_claim"($1, $2, $3, $4, $5, $6)`,

    // $1 id, $2 token, $3 outcome, $4 outcome_escaped, $5 ttl ms; completed_at = now. Completing
    // again with the same token matches too and keeps the stored outcome and times (answers true,
    // changes nothing).
    complete: `WITH n AS (SELECT ${NOW_MS} AS t),
      u AS (
        UPDATE ${t} r SET
          state = 'completed',
          outcome = CASE WHEN r.state = 'completed' THEN r.outcome ELSE $3 END,
          outcome_escaped = CASE WHEN r.state = 'completed' THEN r.outcome_escaped ELSE $4 END,
          lease_until = 0,
          expires_at = CASE WHEN r.state = 'completed' THEN r.expires_at ELSE n.t + $5 END,
          completed_at = CASE WHEN r.state = 'completed' THEN r.completed_at ELSE n.t END
        FROM n WHERE r.id = $1 AND r.token = $2 AND r.token <> '' AND r.expires_at > n.t
        RETURNING r.id, r.awaited)
      SELECT u.id, ${notify('u')} AS notified FROM u`,

    // $1 id, $2 token, $3 guard ms. Attempt 1 deletes the row, or with a guard ($3 > 0) keeps a
    // released marker (attempt 0, no token) until now + $3, so another input is refused
    // meanwhile. A later attempt keeps it in progress with the lease ended and no token, so the
    // next claim is a takeover: an earlier attempt's lease ran out mid-action. The branches
    // exclude each other (a token's attempt is fixed; $3 picks delete or marker).
    release: `WITH n AS (SELECT ${NOW_MS} AS t),
      d AS (
        DELETE FROM ${t} r USING n
        WHERE r.id = $1 AND r.token = $2 AND r.token <> '' AND r.state = 'in_progress' AND r.expires_at > n.t
          AND r.attempt = 1 AND $3::bigint = 0
        RETURNING r.id, r.awaited),
      g AS (
        UPDATE ${t} r SET token = '', attempt = 0, lease_until = n.t, expires_at = n.t + $3::bigint
        FROM n WHERE r.id = $1 AND r.token = $2 AND r.token <> '' AND r.state = 'in_progress'
          AND r.expires_at > n.t AND r.attempt = 1 AND $3::bigint > 0
        RETURNING r.id, r.awaited),
      u AS (
        UPDATE ${t} r SET token = '', lease_until = n.t
        FROM n WHERE r.id = $1 AND r.token = $2 AND r.token <> '' AND r.state = 'in_progress'
          AND r.expires_at > n.t AND r.attempt > 1
        RETURNING r.id, r.awaited),
      x AS (SELECT * FROM d UNION ALL SELECT * FROM g UNION ALL SELECT * FROM u)
      SELECT x.id, ${notify('x')} AS notified FROM x`,

    // $1 id, $2 token, $3 lease ms. expires_at moves with the lease, keeping its margin.
    renew: `WITH n AS (SELECT ${NOW_MS} AS t)
      UPDATE ${t} r SET lease_until = n.t + $3, expires_at = r.expires_at + (n.t + $3 - r.lease_until)
      FROM n WHERE r.id = $1 AND r.token = $2 AND r.token <> '' AND r.state = 'in_progress' AND r.expires_at > n.t
      RETURNING r.lease_until`,

    // $1 id
    // columns named, not r.*: a prepared statement must keep its result type across migrations
    get: `WITH n AS (SELECT ${NOW_MS} AS t)
      SELECT r.state, r.fingerprint, r.token, r.attempt, r.lease_until, r.expires_at, r.outcome,
        r.outcome_escaped
      FROM ${t} r, n WHERE r.id = $1 AND r.expires_at > n.t`,

    // $1 cursor ('' first), $2 limit: a page of live records in id order, outcome size only.
    list: `WITH n AS (SELECT ${NOW_MS} AS t)
      SELECT ${LISTED}, n.t AS now_ms
      FROM n LEFT JOIN ${t} r ON r.id > $1 AND r.expires_at > n.t ORDER BY r.id LIMIT $2`,
    // $1 id: one live record, with the columns of list
    inspectGet: `WITH n AS (SELECT ${NOW_MS} AS t)
      SELECT ${LISTED}
      FROM ${t} r, n WHERE r.id = $1 AND r.expires_at > n.t`,
    // $1 id: deleted expired or not; live tells whether it still counted.
    remove: `DELETE FROM ${t} r WHERE r.id = $1 RETURNING r.expires_at > ${NOW_MS} AS live`,

    // $1 batch size. Rows another transaction holds are skipped, never waited for.
    purge: `WITH n AS (SELECT ${NOW_MS} AS t),
      v AS (
        SELECT r.id FROM ${t} r WHERE r.expires_at <= (SELECT t FROM n)
        LIMIT $1 FOR UPDATE OF r SKIP LOCKED)
      DELETE FROM ${t} r USING v WHERE r.id = v.id`,

    version: `SELECT max(version) AS version FROM "${schema}"."${table}_version"`,
    // A scan of the catalog with the statement's snapshot, not to_regclass: a name lookup without a
    // lock answers from this backend's catalog cache, which the advisory lock does not refresh, so a
    // process that waited on a concurrent migration would find no version table and migrate again.
    versionExists: `SELECT EXISTS (SELECT FROM pg_catalog.pg_tables
      WHERE schemaname = '${schema}' AND tablename = '${table}_version') AS present`,
    recordVersion: `INSERT INTO "${schema}"."${table}_version" (version) VALUES ($1) ON CONFLICT DO NOTHING`,
  };
}

/** A valid, unquoted-safe SQL identifier: lowercase letters, digits and `_`, 1–48 characters. */
export const IDENTIFIER = /^[a-z_][a-z0-9_]{0,47}$/;

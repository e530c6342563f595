/**
 * The SQL the SQLite store runs: one statement per transition. Exported so the benchmark can
 * run exactly these statements on raw `node:sqlite` as the baseline.
 *
 * States: 1 = in progress, 2 = completed. Times are epoch milliseconds on the store's clock
 * (the process's `Date.now()`, read once per operation).
 *
 * ```
 * id            TEXT PRIMARY KEY   a hash of scope + key
 * state         INTEGER            1 in progress, 2 completed
 * fingerprint   TEXT               fixed at claim time
 * token         TEXT               the holder's fencing token; '' when released
 * attempt       INTEGER            1, +1 per takeover; 0 for a released marker
 * lease_until   INTEGER            0 once completed
 * expires_at    INTEGER            past it the record no longer counts
 * outcome       TEXT               NULL while in progress
 * created_at    INTEGER            (v2) set by the claim that creates the record (absent or
 *                                  expired key), kept by takeovers, renewals, releases into a
 *                                  marker, re-taking it and complete; 0 for rows of version 1
 * completed_at  INTEGER            (v2) set by complete; 0 otherwise
 * scope         TEXT               (v2) the claim's scopeHash, kept like created_at; '' when none
 * ```
 *
 * The three version 2 columns are for `inspect` only; no transition reads them.
 *
 * @module
 */

/** The version {@link schemaStatements} creates and {@link upgradeStatements} upgrade to. */
export const SCHEMA_VERSION = 2;

/** DDL of a new records table, at {@link SCHEMA_VERSION}. */
export function schemaStatements(table: string): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${table} (
      id TEXT PRIMARY KEY,
      state INTEGER NOT NULL,
      fingerprint TEXT NOT NULL,
      token TEXT NOT NULL,
      attempt INTEGER NOT NULL,
      lease_until INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      outcome TEXT,
      created_at INTEGER NOT NULL DEFAULT 0,
      completed_at INTEGER NOT NULL DEFAULT 0,
      scope TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID`,
    `CREATE INDEX IF NOT EXISTS ${table}_expires_at ON ${table} (expires_at)`,
  ];
}

/**
 * Upgrades of an existing table: `upgradeStatements(table)[v]` brings it from version v to v + 1.
 * The store runs them in the same `BEGIN IMMEDIATE` transaction that reads the version, so one
 * process upgrades and the others find it done. Every added column has a constant default, so
 * existing rows read it (no table rewrite) and a process still running the previous version's
 * statements (which name their columns) keeps working on the upgraded table.
 */
export function upgradeStatements(table: string): Record<number, string[]> {
  return {
    // 2: created_at, completed_at and scope for inspect; rows of version 1 read 0, 0 and ''
    1: [
      `ALTER TABLE ${table} ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0`,
      `ALTER TABLE ${table} ADD COLUMN completed_at INTEGER NOT NULL DEFAULT 0`,
      `ALTER TABLE ${table} ADD COLUMN scope TEXT NOT NULL DEFAULT ''`,
    ],
  };
}

/** The columns `list` and `inspectGet` answer, in this order (outcome size instead of outcome). */
const LISTED = `id, state, fingerprint, token, attempt, lease_until, expires_at,
      coalesce(length(CAST(outcome AS BLOB)), 0) AS bytes, created_at, completed_at, scope`;

/** The statements, by operation. Parameters are positional, in the order the store binds them. */
export function sqliteStatements(table: string) {
  return {
    /** (id, now) */
    select: `SELECT id, state, fingerprint, token, attempt, lease_until, expires_at, outcome
      FROM ${table} WHERE id = ? AND expires_at > ?`,
    /**
     * (id, fingerprint, token, leaseUntil, keepUntil, now, scope): insert, replace an expired
     * record (attempt 1), or take over an expired lease with the same fingerprint (attempt + 1;
     * also a released marker: attempt 0 + 1). keepUntil is leaseUntil + max(lease, ttl); a
     * takeover keeps a later expires_at. A new or replaced record gets created_at = now and the
     * scope (the request's scopeHash, '' when none); a takeover keeps both.
     */
    claim: `INSERT INTO ${table} AS r (id, state, fingerprint, token, attempt, lease_until, expires_at, outcome,
        created_at, completed_at, scope)
      VALUES (?1, 1, ?2, ?3, 1, ?4, ?5, NULL, ?6, 0, ?7)
      ON CONFLICT (id) DO UPDATE SET
        state = 1,
        fingerprint = excluded.fingerprint,
        token = excluded.token,
        attempt = CASE WHEN r.expires_at <= ?6 THEN 1 ELSE r.attempt + 1 END,
        lease_until = excluded.lease_until,
        expires_at = CASE WHEN r.expires_at <= ?6 THEN excluded.expires_at
                          ELSE max(r.expires_at, excluded.expires_at) END,
        outcome = NULL,
        created_at = CASE WHEN r.expires_at <= ?6 THEN excluded.created_at ELSE r.created_at END,
        completed_at = 0,
        scope = CASE WHEN r.expires_at <= ?6 THEN excluded.scope ELSE r.scope END
      WHERE r.expires_at <= ?6
         OR (r.state = 1 AND r.fingerprint = excluded.fingerprint AND r.lease_until <= ?6)
      RETURNING attempt, token, lease_until`,
    /** (outcome, expiresAt, id, token, now): completed_at = now. */
    complete: `UPDATE ${table} SET state = 2, outcome = ?1, lease_until = 0, expires_at = ?2, completed_at = ?5
      WHERE id = ?3 AND token = ?4 AND token <> '' AND state = 1 AND expires_at > ?5`,
    /** (id, token, now): was it already completed by this token? */
    completedBy: `SELECT 1 AS yes FROM ${table}
      WHERE id = ? AND token = ? AND token <> '' AND state = 2 AND expires_at > ?`,
    /** (id, token, now): the holder of attempt 1 gives the key up. */
    release: `DELETE FROM ${table}
      WHERE id = ? AND token = ? AND token <> '' AND state = 1 AND expires_at > ? AND attempt = 1`,
    /**
     * (now, id, token, guardMs): the holder of attempt 1 gives the key up but keeps a released
     * marker (attempt 0, no token) until now + guardMs, so another input is refused meanwhile.
     */
    releaseGuarded: `UPDATE ${table} SET token = '', attempt = 0, lease_until = ?1, expires_at = ?1 + ?4
      WHERE id = ?2 AND token = ?3 AND token <> '' AND state = 1 AND expires_at > ?1 AND attempt = 1`,
    /**
     * (now, id, token): the holder of a later attempt gives up its lease; the record stays, so
     * the next claim is a takeover (an earlier attempt may have run).
     */
    releaseTakeover: `UPDATE ${table} SET token = '', lease_until = ?1
      WHERE id = ?2 AND token = ?3 AND token <> '' AND state = 1 AND expires_at > ?1 AND attempt > 1`,
    /** (leaseUntil, id, token, now): expires_at moves with the lease, keeping its margin. */
    renew: `UPDATE ${table} SET lease_until = ?1, expires_at = expires_at + (?1 - lease_until)
      WHERE id = ?2 AND token = ?3 AND token <> '' AND state = 1 AND expires_at > ?4`,
    /**
     * (cursor, now, limit): a page of live records in id order: id, state, fingerprint, token,
     * attempt, lease_until, expires_at, outcome bytes, created_at, completed_at, scope.
     */
    list: `SELECT ${LISTED}
      FROM ${table} WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?`,
    /** (id, now): one live record, with the columns of `list`. */
    inspectGet: `SELECT ${LISTED}
      FROM ${table} WHERE id = ? AND expires_at > ?`,
    /** (id): expired or not, so nothing is left behind; the answer tells whether it was live. */
    remove: `DELETE FROM ${table} WHERE id = ? RETURNING expires_at`,
    /** (now, limit) */
    purge: `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE expires_at <= ? LIMIT ?)`,
  };
}

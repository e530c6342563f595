/**
 * The SQL the SQLite store runs: one statement per transition. Exported so the benchmark can
 * run exactly these statements on raw `node:sqlite` as the baseline.
 *
 * States: 1 = in progress, 2 = completed. Times are epoch milliseconds.
 *
 * @module
 */

export const SCHEMA_VERSION = 1;

/** DDL for version 1 of the records table. */
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
      outcome TEXT
    ) WITHOUT ROWID`,
    `CREATE INDEX IF NOT EXISTS ${table}_expires_at ON ${table} (expires_at)`,
  ];
}

/** The statements, by operation. Parameters are positional, in the order the store binds them. */
export function sqliteStatements(table: string) {
  return {
    /** (id, now) */
    select: `SELECT id, state, fingerprint, token, attempt, lease_until, expires_at, outcome
      FROM ${table} WHERE id = ? AND expires_at > ?`,
    /**
     * (id, fingerprint, token, leaseUntil, keepUntil, now): insert, replace an expired record
     * (attempt 1), or take over an expired lease with the same fingerprint (attempt + 1).
     * keepUntil is leaseUntil + max(lease, ttl); a takeover keeps a later expires_at.
     */
    claim: `INSERT INTO ${table} AS r (id, state, fingerprint, token, attempt, lease_until, expires_at, outcome)
      VALUES (?1, 1, ?2, ?3, 1, ?4, ?5, NULL)
      ON CONFLICT (id) DO UPDATE SET
        state = 1,
        fingerprint = excluded.fingerprint,
        token = excluded.token,
        attempt = CASE WHEN r.expires_at <= ?6 THEN 1 ELSE r.attempt + 1 END,
        lease_until = excluded.lease_until,
        expires_at = CASE WHEN r.expires_at <= ?6 THEN excluded.expires_at
                          ELSE max(r.expires_at, excluded.expires_at) END,
        outcome = NULL
      WHERE r.expires_at <= ?6
         OR (r.state = 1 AND r.fingerprint = excluded.fingerprint AND r.lease_until <= ?6)
      RETURNING attempt, token, lease_until`,
    /** (outcome, expiresAt, id, token, now) */
    complete: `UPDATE ${table} SET state = 2, outcome = ?, lease_until = 0, expires_at = ?
      WHERE id = ? AND token = ? AND token <> '' AND state = 1 AND expires_at > ?`,
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
    /** (cursor, now, limit): a page of live records in id order, outcome size instead of outcome. */
    list: `SELECT id, state, fingerprint, token, attempt, lease_until, expires_at,
      coalesce(length(CAST(outcome AS BLOB)), 0) AS bytes
      FROM ${table} WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?`,
    /** (id): expired or not, so nothing is left behind; the answer tells whether it was live. */
    remove: `DELETE FROM ${table} WHERE id = ? RETURNING expires_at`,
    /** (now, limit) */
    purge: `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE expires_at <= ? LIMIT ?)`,
  };
}

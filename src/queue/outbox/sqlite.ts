/**
 * The outbox on SQLite (`node:sqlite`): `add(db, event)` inside the caller's transaction on
 * their own connection; the relay claims through a connection of its own.
 *
 * SQLite has no `SKIP LOCKED`; its equivalent here is its single writer: each claim is one
 * `UPDATE … WHERE seq IN (SELECT … LIMIT n) RETURNING` statement, which runs under the
 * database's write lock, so relays in several processes claim one after another and never
 * the same row; the lease columns then keep a claimed row from being claimed again until it
 * is marked or its lease ends. Writers are serialised too, so sequence order is commit order
 * and per-key ordering needs no extra lock. No LISTEN: relays on SQLite poll. Times are the
 * application's clock (epoch ms).
 *
 * @module
 */
import { DatabaseSync } from 'node:sqlite';
import { InvalidInputError, InvalidOptionError } from '../../core/errors.ts';
import { checkOptions, identifier, toRow } from './event.ts';
import type { NewOutboxEvent, OutboxBackend, OutboxEvent, ParkedEvent } from './types.ts';

/** A `node:sqlite` connection (or anything with the same `prepare`). */
export interface SqliteDatabaseLike {
  prepare(sql: string): { run(...params: unknown[]): unknown };
}

/** Options of {@link sqliteOutbox}. */
export interface SqliteOutboxOptions {
  /** The database file; the relay opens its own connection to it (WAL). */
  path: string;
  /** Table name. Default `idem_outbox`. */
  table?: string;
}

/** The SQLite outbox: the relay's backend plus `add`. */
export interface SqliteOutbox extends OutboxBackend {
  /** Writes `event` through `db` (inside the caller's `BEGIN … COMMIT`) and answers its id. */
  add(db: SqliteDatabaseLike, event: NewOutboxEvent): string;
}

/**
 * An outbox table in an SQLite file. `add` is synchronous, like `node:sqlite`.
 *
 * @example
 * import { DatabaseSync } from 'node:sqlite';
 * import { sqliteOutbox } from 'idem/outbox';
 * const outbox = sqliteOutbox({ path: 'app.db' });
 * await outbox.migrate();
 * const db = new DatabaseSync('app.db');
 * db.exec('BEGIN IMMEDIATE');
 * db.prepare('UPDATE claims SET status = ? WHERE id = ?').run('approved', 'c-7');
 * outbox.add(db, { topic: 'claims.approved', key: 'c-7', payload: { claimId: 'c-7' } });
 * db.exec('COMMIT');
 */
export function sqliteOutbox(options: SqliteOutboxOptions): SqliteOutbox {
  checkOptions(options, ['path', 'table'], 'sqliteOutbox');
  if (typeof options.path !== 'string' || options.path === '') {
    throw new InvalidOptionError('sqliteOutbox: path must be the database file');
  }
  const T = `"${identifier(options.table ?? 'idem_outbox', 'sqliteOutbox: table')}"`;
  const name = T.slice(1, -1);
  let db: DatabaseSync | undefined;
  const conn = () => {
    if (!db) {
      db = new DatabaseSync(options.path, { timeout: 10_000 });
      db.exec('PRAGMA journal_mode = WAL');
    }
    return db;
  };
  const insertSql = `INSERT INTO ${T} (id, topic, ordering_key, payload, headers, next_attempt_at, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)`;

  return {
    kind: 'sqlite',
    async migrate() {
      conn().exec(`CREATE TABLE IF NOT EXISTS ${T} (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        ordering_key TEXT,
        payload TEXT NOT NULL,
        headers TEXT NOT NULL DEFAULT '{}',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        locked_until INTEGER,
        locked_by TEXT,
        last_error TEXT,
        parked_at INTEGER,
        published_at INTEGER,
        created_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS "${name}_due" ON ${T} (seq) WHERE published_at IS NULL AND parked_at IS NULL;
      CREATE INDEX IF NOT EXISTS "${name}_key" ON ${T} (ordering_key, seq) WHERE published_at IS NULL;
      CREATE INDEX IF NOT EXISTS "${name}_done" ON ${T} (published_at) WHERE published_at IS NOT NULL;`);
    },
    add(tx, event) {
      if (!tx || typeof tx.prepare !== 'function') {
        throw new InvalidInputError('outbox.add(db, event): db must be a node:sqlite DatabaseSync');
      }
      const row = toRow(event);
      if ((tx as { isTransaction?: boolean }).isTransaction === false) {
        throw new InvalidInputError(
          'outbox.add(db, event): db is not inside a transaction (BEGIN first), so the event would not commit with your change',
        );
      }
      const now = Date.now();
      tx.prepare(insertSql).run(row.id, row.topic, row.key, row.payload, row.headers, now + row.delayMs, now);
      return row.id;
    },
    async claim(limit, leaseMs, owner) {
      const now = Date.now();
      const rows = conn()
        .prepare(
          `UPDATE ${T} SET locked_until = ?, locked_by = ?, attempts = attempts + 1
           WHERE seq IN (SELECT o.seq FROM ${T} o
             WHERE o.published_at IS NULL AND o.parked_at IS NULL AND o.next_attempt_at <= ?
               AND (o.locked_until IS NULL OR o.locked_until <= ?)
               AND (o.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM ${T} p
                 WHERE p.ordering_key = o.ordering_key AND p.seq < o.seq AND p.published_at IS NULL))
             ORDER BY o.seq LIMIT ?)
           RETURNING seq, id, topic, ordering_key, payload, headers, attempts, created_at`,
        )
        .all(now + leaseMs, owner, now, now, limit) as Array<Record<string, unknown>>;
      return rows
        .sort((a, b) => Number(a.seq) - Number(b.seq))
        .map(
          (r): OutboxEvent => ({
            id: r.id as string,
            topic: r.topic as string,
            key: (r.ordering_key as string | null) ?? null,
            payload: JSON.parse(r.payload as string),
            headers: JSON.parse(r.headers as string),
            attempts: Number(r.attempts),
            createdAt: Number(r.created_at),
          }),
        );
    },
    async markPublished(ids) {
      if (ids.length === 0) return;
      conn()
        .prepare(
          `UPDATE ${T} SET published_at = ?, locked_until = NULL, last_error = NULL
           WHERE published_at IS NULL AND id IN (SELECT value FROM json_each(?))`,
        )
        .run(Date.now(), JSON.stringify(ids));
    },
    async markFailed(failures, owner) {
      if (failures.length === 0) return; // no write lock taken after a batch that all published
      const db = conn();
      const st = db.prepare(
        `UPDATE ${T} SET locked_until = NULL, last_error = ?, next_attempt_at = ?, parked_at = ?
         WHERE id = ? AND locked_by = ? AND published_at IS NULL`,
      );
      const now = Date.now();
      db.exec('BEGIN IMMEDIATE');
      try {
        for (const f of failures)
          st.run(f.error.slice(0, 2000), now + f.retryInMs, f.park ? now : null, f.id, owner);
        db.exec('COMMIT');
      } catch (err) {
        db.exec('ROLLBACK');
        throw err;
      }
    },
    async purge(olderThanMs) {
      const r = conn()
        .prepare(`DELETE FROM ${T} WHERE published_at IS NOT NULL AND published_at < ?`)
        .run(Date.now() - olderThanMs);
      return Number(r.changes);
    },
    async parked(limit = 100) {
      const rows = conn()
        .prepare(
          `SELECT id, topic, ordering_key, attempts, last_error FROM ${T}
           WHERE parked_at IS NOT NULL AND published_at IS NULL ORDER BY seq LIMIT ?`,
        )
        .all(limit) as Array<Record<string, unknown>>;
      return rows.map(
        (r): ParkedEvent => ({
          id: r.id as string,
          topic: r.topic as string,
          key: (r.ordering_key as string | null) ?? null,
          attempts: Number(r.attempts),
          lastError: (r.last_error as string | null) ?? null,
        }),
      );
    },
    async retryParked(ids) {
      const r = conn()
        .prepare(
          `UPDATE ${T} SET parked_at = NULL, attempts = 0, next_attempt_at = ?
           WHERE parked_at IS NOT NULL AND published_at IS NULL AND (? IS NULL OR id IN (SELECT value FROM json_each(?)))`,
        )
        .run(Date.now(), ids ? 1 : null, JSON.stringify(ids ?? []));
      return Number(r.changes);
    },
    async stats() {
      const r = conn()
        .prepare(
          `SELECT coalesce(sum(published_at IS NULL AND parked_at IS NULL), 0) AS pending,
                  coalesce(sum(published_at IS NOT NULL), 0) AS published,
                  coalesce(sum(published_at IS NULL AND parked_at IS NOT NULL), 0) AS parked FROM ${T}`,
        )
        .get() as Record<string, unknown>;
      return { pending: Number(r.pending), published: Number(r.published), parked: Number(r.parked) };
    },
    async close() {
      db?.close();
      db = undefined;
    },
  };
}

/**
 * The SQLite store's `counters`, in two tables next to the records, created on first use
 * (`CREATE TABLE IF NOT EXISTS`, so a database from an older idem gains them without a migration):
 *
 * ```
 * <table>_counts   minute INTEGER, name TEXT, value INTEGER     per-minute totals, kept 35 days
 * <table>_replays  id TEXT, replays INTEGER, last_replay_at INTEGER, expires_at INTEGER
 * ```
 *
 * `add` is one `BEGIN IMMEDIATE` transaction: upserts, then a bounded prune of old buckets and
 * expired replay rows (a replay row lives until its record expires, and at least 7 days after its
 * last replay).
 *
 * @module
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import {
  BUCKET_RETENTION_MS,
  COUNTER_NAMES,
  type CounterName,
  normalizeBatch,
  RECORD_RETENTION_MS,
  readFrom,
  type StoreCounters,
  zeroTotals,
} from '../../core/counters.ts';
import { StoreUnavailableError } from '../../core/errors.ts';

/** Expired replay rows one `add` deletes at most. */
const PRUNE_LIMIT = 500;

/**
 * Counters on an open database, for the records table `table` (a checked identifier).
 *
 * @example
 * const counters = sqliteCounters(() => db, 'idem_records');
 */
export function sqliteCounters(db: DatabaseSync, table: string): StoreCounters {
  let st: Record<
    'bucket' | 'replay' | 'pruneBuckets' | 'pruneReplays' | 'read' | 'record' | 'forget',
    StatementSync
  >;
  const statements = () => {
    if (st) return st;
    const c = `"${table}_counts"`;
    const r = `"${table}_replays"`;
    db.exec(`CREATE TABLE IF NOT EXISTS ${c} (
      minute INTEGER NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
      PRIMARY KEY (minute, name)) WITHOUT ROWID`);
    db.exec(`CREATE TABLE IF NOT EXISTS ${r} (
      id TEXT PRIMARY KEY, replays INTEGER NOT NULL, last_replay_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL)`);
    db.exec(`CREATE INDEX IF NOT EXISTS "${table}_replays_expires_at" ON ${r} (expires_at)`);
    st = {
      bucket: db.prepare(`INSERT INTO ${c} (minute, name, value) VALUES (?, ?, ?)
        ON CONFLICT (minute, name) DO UPDATE SET value = value + excluded.value`),
      // ?1 id, ?2 replays, ?3 last replay, ?4 now, ?5 retention after the last replay
      replay: db.prepare(`INSERT INTO ${r} (id, replays, last_replay_at, expires_at)
        VALUES (?1, ?2, ?3, max(?3 + ?5, coalesce((SELECT expires_at FROM "${table}" WHERE id = ?1 AND expires_at > ?4), 0)))
        ON CONFLICT (id) DO UPDATE SET
          replays = CASE WHEN expires_at > ?4 THEN replays ELSE 0 END + excluded.replays,
          last_replay_at = max(last_replay_at, excluded.last_replay_at),
          expires_at = max(expires_at, excluded.expires_at)`),
      pruneBuckets: db.prepare(`DELETE FROM ${c} WHERE minute < ?`),
      pruneReplays: db.prepare(
        `DELETE FROM ${r} WHERE id IN (SELECT id FROM ${r} WHERE expires_at <= ? LIMIT ${PRUNE_LIMIT})`,
      ),
      read: db.prepare(`SELECT name, sum(value) AS total FROM ${c} WHERE minute >= ? GROUP BY name`),
      record: db.prepare(`SELECT replays, last_replay_at FROM ${r} WHERE id = ? AND expires_at > ?`),
      forget: db.prepare(`DELETE FROM ${r} WHERE id = ?`),
    };
    return st;
  };
  const guard = <R>(what: string, fn: () => R): Promise<R> => {
    try {
      return Promise.resolve(fn());
    } catch (error) {
      return Promise.reject(
        new StoreUnavailableError(`sqlite counters ${what}: ${(error as Error).message}`, { cause: error }),
      );
    }
  };

  return {
    async add(batch) {
      const t = Date.now();
      const { buckets, records } = normalizeBatch(batch, t);
      return guard('add', () => {
        const s = statements();
        db.exec('BEGIN IMMEDIATE');
        try {
          for (const b of buckets) s.bucket.run(b.minute, b.name, b.value);
          for (const r of records) s.replay.run(r.id, r.replays, r.lastReplayAt, t, RECORD_RETENTION_MS);
          s.pruneBuckets.run(t - BUCKET_RETENTION_MS);
          s.pruneReplays.run(t);
          db.exec('COMMIT');
        } catch (error) {
          if (db.isTransaction) db.exec('ROLLBACK');
          throw error;
        }
      });
    },
    async read(options = {}) {
      const t = Date.now();
      const from = readFrom(options.since, t);
      return guard('read', () => {
        const totals = zeroTotals();
        for (const row of statements().read.all(from) as { name: string; total: number }[]) {
          if ((COUNTER_NAMES as readonly string[]).includes(row.name))
            totals[row.name as CounterName] = Number(row.total);
        }
        return totals;
      });
    },
    async record(id) {
      return guard('record', () => {
        const row = statements().record.get(id, Date.now()) as
          | { replays: number; last_replay_at: number }
          | undefined;
        return row ? { replays: Number(row.replays), lastReplayAt: Number(row.last_replay_at) } : undefined;
      });
    },
    async forget(id) {
      return guard('forget', () => {
        statements().forget.run(id);
      });
    },
  };
}

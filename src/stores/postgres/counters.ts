/**
 * The Postgres store's `counters`, in two tables in the store's schema, created on first use
 * (under the store's advisory lock; a role without CREATE rights works once they exist):
 *
 * ```
 * <table>_counts   minute bigint, name text, value bigint        per-minute totals, kept 35 days
 * <table>_replays  id text, replays bigint, last_replay_at bigint, expires_at bigint
 * ```
 *
 * `add` is one statement (one round trip, one transaction): upserts from arrays, in a stable
 * order so concurrent writers never deadlock, plus a bounded prune of old buckets and expired
 * replay rows (a replay row lives until its record expires, and at least 7 days after its last
 * replay). They are not part of the records table's migrations, so a database at any schema
 * version gains them without an upgrade.
 *
 * @module
 */
import { createHash } from 'node:crypto';
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
import type { PgResultLike } from './connection.ts';
import { NOW_MS } from './sql.ts';

/** One statement on the store's pool, within its deadline (the store's `query`). */
export type Query = (what: string, text: string, values: unknown[]) => Promise<PgResultLike>;

/** Expired replay rows one `add` deletes at most. */
const PRUNE_LIMIT = 500;

/**
 * Counters over the store's `query`, for `"schema"."table"` (checked identifiers).
 *
 * @example
 * const counters = postgresCounters(query, 'idem', 'idem_records');
 */
export function postgresCounters(query: Query, schema: string, table: string): StoreCounters {
  const t = `"${schema}"."${table}"`;
  const c = `"${schema}"."${table}_counts"`;
  const r = `"${schema}"."${table}_replays"`;
  const lock = createHash('sha256').update(`idem:${schema}`).digest().readBigInt64BE(0).toString();
  let created: Promise<void> | undefined;
  const ensure = () => {
    created ??= (async () => {
      const found = await query('counters check', `SELECT to_regclass('${r}') IS NOT NULL AS present`, []);
      if (found.rows[0]?.present) return;
      await query(
        'counters tables',
        `DO $$ BEGIN
          PERFORM pg_advisory_xact_lock(${lock}::bigint);
          CREATE TABLE IF NOT EXISTS ${c} (
            minute bigint NOT NULL, name text NOT NULL, value bigint NOT NULL, PRIMARY KEY (minute, name));
          CREATE TABLE IF NOT EXISTS ${r} (
            id text PRIMARY KEY, replays bigint NOT NULL, last_replay_at bigint NOT NULL, expires_at bigint NOT NULL);
          CREATE INDEX IF NOT EXISTS "${table}_replays_expires_at" ON ${r} (expires_at);
        END $$`,
        [],
      );
    })().catch((error) => {
      created = undefined;
      throw error;
    });
    return created;
  };

  // $1 minutes, $2 names, $3 values, $4 ids, $5 replays, $6 last replays, $7 retention ms, $8 bucket cutoff
  const add = `WITH n AS (SELECT ${NOW_MS} AS t),
    b AS (
      INSERT INTO ${c} AS x (minute, name, value)
      SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
      ON CONFLICT (minute, name) DO UPDATE SET value = x.value + excluded.value
      RETURNING 1),
    r AS (
      INSERT INTO ${r} AS x (id, replays, last_replay_at, expires_at)
      SELECT u.id, u.n, u.at, greatest(u.at + $7::bigint,
        coalesce((SELECT k.expires_at FROM ${t} k, n WHERE k.id = u.id AND k.expires_at > n.t), 0))
      FROM unnest($4::text[], $5::bigint[], $6::bigint[]) AS u(id, n, at)
      ON CONFLICT (id) DO UPDATE SET
        replays = CASE WHEN x.expires_at > (SELECT t FROM n) THEN x.replays ELSE 0 END + excluded.replays,
        last_replay_at = greatest(x.last_replay_at, excluded.last_replay_at),
        expires_at = greatest(x.expires_at, excluded.expires_at)
      RETURNING 1),
    pb AS (DELETE FROM ${c} WHERE minute < $8::bigint RETURNING 1),
    pr AS (
      DELETE FROM ${r} WHERE id IN (
        SELECT id FROM ${r}, n WHERE expires_at <= n.t AND id <> ALL($4::text[])
        LIMIT ${PRUNE_LIMIT} FOR UPDATE SKIP LOCKED)
      RETURNING 1)
    SELECT (SELECT count(*) FROM b) AS buckets, (SELECT count(*) FROM r) AS records,
      (SELECT count(*) FROM pb) + (SELECT count(*) FROM pr) AS pruned`;

  return {
    async add(batch) {
      const now = Date.now();
      const { buckets, records } = normalizeBatch(batch, now);
      await ensure();
      await query('counters add', add, [
        buckets.map((b) => b.minute),
        buckets.map((b) => b.name),
        buckets.map((b) => b.value),
        records.map((x) => x.id),
        records.map((x) => x.replays),
        records.map((x) => x.lastReplayAt),
        RECORD_RETENTION_MS,
        now - BUCKET_RETENTION_MS,
      ]);
    },
    async read(options = {}) {
      const from = readFrom(options.since, Date.now());
      await ensure();
      const rows = (
        await query(
          'counters read',
          `SELECT name, sum(value) AS total FROM ${c} WHERE minute >= $1 GROUP BY name`,
          [from],
        )
      ).rows;
      const totals = zeroTotals();
      for (const row of rows) {
        const name = String(row.name);
        if ((COUNTER_NAMES as readonly string[]).includes(name))
          totals[name as CounterName] = Number(row.total);
      }
      return totals;
    },
    async record(id) {
      await ensure();
      const row = (
        await query(
          'counters record',
          `SELECT replays, last_replay_at FROM ${r} WHERE id = $1 AND expires_at > ${NOW_MS}`,
          [id],
        )
      ).rows[0];
      return row ? { replays: Number(row.replays), lastReplayAt: Number(row.last_replay_at) } : undefined;
    },
    async forget(id) {
      await ensure();
      await query('counters forget', `DELETE FROM ${r} WHERE id = $1`, [id]);
    },
  };
}

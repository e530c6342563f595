/**
 * The outbox on PostgreSQL (`pg`): `add(tx, event)` in the caller's transaction, claims with
 * `FOR UPDATE SKIP LOCKED`, a NOTIFY on every add (delivered at commit) and a LISTEN
 * connection for the relay.
 *
 * Per-key ordering: `add` takes a transaction-scoped advisory lock on the event's key before
 * the row gets its sequence number, so two transactions adding events with the same key
 * commit in sequence order; a claim takes only the oldest unpublished event of each key.
 *
 * @module
 */

import { InvalidInputError, InvalidOptionError } from '../../core/errors.ts';
import { guardPool } from '../pg-guard.ts';
import { checkOptions, identifier, toRow } from './event.ts';
import type {
  FailedEvent,
  NewOutboxEvent,
  OutboxBackend,
  OutboxEvent,
  OutboxStats,
  ParkedEvent,
} from './types.ts';

/** Anything that runs a query: a `pg` Client, a PoolClient inside `BEGIN`, or a Pool. */
export interface PgQueryable {
  query(
    text: string,
    values?: unknown[],
  ): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>;
}

/** A checked-out `pg` connection, as the LISTEN side needs it. */
export interface PgListenClient extends PgQueryable {
  on(event: 'notification', listener: (msg: { channel: string }) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  removeAllListeners(event?: string): unknown;
  release(err?: Error | boolean): void;
}

/** A `pg.Pool` (or anything with the same `query` and `connect`). */
export interface PgPoolLike extends PgQueryable {
  connect(): Promise<PgListenClient>;
}

/** Options of {@link postgresOutbox}. */
export interface PostgresOutboxOptions {
  /** The pool the relay claims and marks through (and holds one LISTEN connection of). */
  pool: PgPoolLike;
  /** Table name. Default `idem_outbox`. */
  table?: string;
  /** Schema. Default: the connection's search_path. */
  schema?: string;
}

/** The Postgres outbox: the relay's backend plus `add`. */
export interface PostgresOutbox extends OutboxBackend {
  /**
   * Writes `event` in the caller's transaction `tx` and answers its id. Rolled back with the
   * transaction; published by a relay after commit.
   */
  add(tx: PgQueryable, event: NewOutboxEvent): Promise<string>;
  readonly table: string;
}

const OPTIONS = ['pool', 'table', 'schema'];

/**
 * An outbox table in PostgreSQL. Call `migrate()` once at startup (the relay does too).
 *
 * @example
 * import pg from 'pg';
 * import { postgresOutbox } from 'idem/outbox';
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * const outbox = postgresOutbox({ pool });
 * await outbox.migrate();
 * const client = await pool.connect();
 * await client.query('BEGIN');
 * await client.query('UPDATE claims SET status = $1 WHERE id = $2', ['approved', 'c-7']);
 * await outbox.add(client, { topic: 'claims.approved', key: 'c-7', payload: { claimId: 'c-7' } });
 * await client.query('COMMIT');
 * client.release();
 */
export function postgresOutbox(options: PostgresOutboxOptions): PostgresOutbox {
  checkOptions(options, OPTIONS, 'postgresOutbox');
  const { pool } = options;
  if (!pool || typeof pool.query !== 'function' || typeof pool.connect !== 'function') {
    throw new InvalidOptionError('postgresOutbox: pool must be a pg.Pool');
  }
  guardPool(pool);
  const name = identifier(options.table ?? 'idem_outbox', 'postgresOutbox: table');
  const schema =
    options.schema === undefined ? undefined : identifier(options.schema, 'postgresOutbox: schema');
  const T = schema ? `"${schema}"."${name}"` : `"${name}"`;
  const channel = `${schema ? `${schema}.` : ''}${name}`;
  const lockId = `idem_outbox:${channel}`;

  const ddl = [
    ...(schema ? [`CREATE SCHEMA IF NOT EXISTS "${schema}"`] : []),
    `CREATE TABLE IF NOT EXISTS ${T} (
      seq bigserial PRIMARY KEY,
      id text NOT NULL UNIQUE,
      topic text NOT NULL,
      ordering_key text,
      payload text NOT NULL,
      headers text NOT NULL DEFAULT '{}',
      attempts integer NOT NULL DEFAULT 0,
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      locked_until timestamptz,
      locked_by text,
      last_error text,
      parked_at timestamptz,
      published_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now())`,
    `CREATE INDEX IF NOT EXISTS "${name}_due" ON ${T} (seq) WHERE published_at IS NULL AND parked_at IS NULL`,
    `CREATE INDEX IF NOT EXISTS "${name}_key" ON ${T} (ordering_key, seq) WHERE published_at IS NULL`,
    `CREATE INDEX IF NOT EXISTS "${name}_done" ON ${T} (published_at) WHERE published_at IS NOT NULL`,
  ];

  const claimSql = `WITH next AS (
      SELECT o.seq FROM ${T} o
      WHERE o.published_at IS NULL AND o.parked_at IS NULL AND o.next_attempt_at <= now()
        AND (o.locked_until IS NULL OR o.locked_until <= now())
        AND (o.ordering_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM ${T} p WHERE p.ordering_key = o.ordering_key AND p.seq < o.seq AND p.published_at IS NULL))
      ORDER BY o.seq LIMIT $1 FOR UPDATE SKIP LOCKED)
    UPDATE ${T} t SET locked_until = now() + $2 * interval '1 millisecond', locked_by = $3, attempts = t.attempts + 1
    FROM next WHERE t.seq = next.seq
    RETURNING t.seq, t.id, t.topic, t.ordering_key, t.payload, t.headers, t.attempts,
      (extract(epoch FROM t.created_at) * 1000)::float8 AS created_ms`;

  return {
    kind: 'postgres',
    table: T,
    async migrate() {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockId]);
        for (const statement of ddl) await client.query(statement);
        await client.query('COMMIT');
        client.release();
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        client.release(true);
        throw err;
      }
    },
    async add(tx, event) {
      if (!tx || typeof tx.query !== 'function') {
        throw new InvalidInputError('outbox.add(tx, event): tx must be a pg client inside BEGIN … COMMIT');
      }
      const row = toRow(event);
      // refuse what would write the event outside the caller's transaction
      if ('totalCount' in tx) {
        throw new InvalidInputError('outbox.add(tx, event): pass the client you ran BEGIN on, not the pool');
      }
      if ((tx as { getTransactionStatus?: () => string | null }).getTransactionStatus?.() === 'I') {
        throw new InvalidInputError(
          'outbox.add(tx, event): the client is not inside a transaction (BEGIN first), so the event would not commit with your change',
        );
      }
      if (row.key !== null)
        await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${lockId}:${row.key}`]);
      await tx.query(
        `WITH ins AS (INSERT INTO ${T} (id, topic, ordering_key, payload, headers, next_attempt_at)
          VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond') RETURNING id)
         SELECT pg_notify($7, '') FROM ins`,
        [row.id, row.topic, row.key, row.payload, row.headers, row.delayMs, channel],
      );
      return row.id;
    },
    async claim(limit, leaseMs, owner) {
      const { rows } = await pool.query(claimSql, [limit, leaseMs, owner]);
      return rows
        .sort((a, b) => Number(a.seq) - Number(b.seq))
        .map(
          (r): OutboxEvent => ({
            id: r.id as string,
            topic: r.topic as string,
            key: (r.ordering_key as string | null) ?? null,
            payload: JSON.parse(r.payload as string),
            headers: JSON.parse(r.headers as string),
            attempts: r.attempts as number,
            createdAt: Math.round(r.created_ms as number),
          }),
        );
    },
    async markPublished(ids) {
      if (ids.length === 0) return;
      await pool.query(
        `UPDATE ${T} SET published_at = now(), locked_until = NULL, last_error = NULL WHERE id = ANY($1::text[]) AND published_at IS NULL`,
        [ids],
      );
    },
    async markFailed(failures: readonly FailedEvent[], owner) {
      if (failures.length === 0) return;
      await pool.query(
        `UPDATE ${T} t SET locked_until = NULL, last_error = f.error,
           next_attempt_at = now() + f.delay * interval '1 millisecond',
           parked_at = CASE WHEN f.park THEN now() END
         FROM unnest($1::text[], $2::text[], $3::float8[], $4::bool[]) AS f(id, error, delay, park)
         WHERE t.id = f.id AND t.locked_by = $5 AND t.published_at IS NULL`,
        [
          failures.map((f) => f.id),
          failures.map((f) => f.error.slice(0, 2000)),
          failures.map((f) => f.retryInMs),
          failures.map((f) => f.park),
          owner,
        ],
      );
    },
    async purge(olderThanMs) {
      const r = await pool.query(
        `DELETE FROM ${T} WHERE published_at IS NOT NULL AND published_at < now() - $1 * interval '1 millisecond'`,
        [olderThanMs],
      );
      return r.rowCount ?? 0;
    },
    async parked(limit = 100) {
      const { rows } = await pool.query(
        `SELECT id, topic, ordering_key, attempts, last_error FROM ${T} WHERE parked_at IS NOT NULL AND published_at IS NULL ORDER BY seq LIMIT $1`,
        [limit],
      );
      return rows.map(
        (r): ParkedEvent => ({
          id: r.id as string,
          topic: r.topic as string,
          key: (r.ordering_key as string | null) ?? null,
          attempts: r.attempts as number,
          lastError: (r.last_error as string | null) ?? null,
        }),
      );
    },
    async retryParked(ids) {
      const r = await pool.query(
        `UPDATE ${T} SET parked_at = NULL, attempts = 0, next_attempt_at = now()
         WHERE parked_at IS NOT NULL AND published_at IS NULL AND ($1::text[] IS NULL OR id = ANY($1::text[]))`,
        [ids ?? null],
      );
      if ((r.rowCount ?? 0) > 0) await pool.query('SELECT pg_notify($1, $2)', [channel, '']);
      return r.rowCount ?? 0;
    },
    async stats(): Promise<OutboxStats> {
      const { rows } = await pool.query(
        `SELECT count(*) FILTER (WHERE published_at IS NULL AND parked_at IS NULL)::int AS pending,
                count(*) FILTER (WHERE published_at IS NOT NULL)::int AS published,
                count(*) FILTER (WHERE published_at IS NULL AND parked_at IS NOT NULL)::int AS parked
         FROM ${T}`,
      );
      const r = rows[0]!;
      return { pending: r.pending as number, published: r.published as number, parked: r.parked as number };
    },
    // LISTEN holds a connection for good: on a pool of one it would starve the claims, so poll
    ...(poolMax(pool) === 1
      ? {}
      : { listen: (onWake, onError) => listenLoop(pool, channel, onWake, onError) }),
    async close() {},
  };
}

function poolMax(pool: PgPoolLike): number | undefined {
  return (pool as { options?: { max?: number } }).options?.max;
}

/**
 * Holds one pool connection with `LISTEN channel`; reconnects with backoff (100 ms … 5 s)
 * when it drops, and wakes once after each reconnect (a notification may have been missed).
 */
function listenLoop(
  pool: PgPoolLike,
  channel: string,
  onWake: () => void,
  onError: (err: unknown) => void,
): () => Promise<void> {
  let client: PgListenClient | undefined;
  let stopped = false;
  let failures = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const quoted = `"${channel.replaceAll('"', '""')}"`;

  const drop = (err: unknown) => {
    const c = client;
    client = undefined;
    if (c) {
      c.removeAllListeners('notification');
      c.release(true);
    }
    if (stopped) return;
    onError(err);
    failures++;
    timer = setTimeout(open, Math.min(5000, 100 * 2 ** (failures - 1)));
  };
  const open = async () => {
    if (stopped) return;
    let c: PgListenClient | undefined;
    try {
      c = await pool.connect();
      c.on('error', (err) => {
        if (client === c) drop(err);
      });
      c.on('notification', (msg) => {
        if (msg.channel === channel) onWake();
      });
      await c.query(`LISTEN ${quoted}`);
      if (stopped) {
        c.removeAllListeners('notification');
        c.release(true);
        return;
      }
      client = c;
      failures = 0;
      onWake();
    } catch (err) {
      c?.release(true);
      c = undefined;
      drop(err);
    }
  };
  void open();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    const c = client;
    client = undefined;
    if (c) {
      c.removeAllListeners('notification');
      await c.query(`UNLISTEN ${quoted}`).catch(() => {});
      c.release(true);
    }
  };
}

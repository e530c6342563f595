/**
 * The PostgreSQL store: records in one table, each operation one statement, times from the
 * database clock, waiters woken by LISTEN/NOTIFY. Takes your `pg.Pool` or a connection string.
 * See docs/stores/postgres.md for the schema, the statement behind each operation, and HA notes.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { InvalidOptionError, OutcomeTooLargeError, StoreUnavailableError } from '../../core/errors.ts';
import {
  type ClaimRequest,
  type ClaimResult,
  checkListOptions,
  guardMsOf,
  type ListedRecord,
  listedRecordOf,
  type Store,
  type StoreRecord,
} from '../../core/store.ts';
import { createDeadlines } from '../deadlines.ts';
import {
  guardPool,
  listenForErrors,
  loadPg,
  type PgClientLike,
  type PgPoolLike,
  type PgResultLike,
  unavailable,
} from './connection.ts';
import { postgresCounters } from './counters.ts';
import { createListener, type Listener } from './listener.ts';
import { ensureSchema } from './schema.ts';
import { IDENTIFIER, statements } from './sql.ts';

export type { PgClientLike, PgPoolLike, PgResultLike } from './connection.ts';

/** Options of {@link postgresStore}. Give exactly one of `pool` and `connectionString`. */
export interface PostgresStoreOptions {
  /** Your `pg.Pool`. The store checks clients out and back; `close()` leaves the pool open. */
  pool?: PgPoolLike;
  /** A connection string; the store creates (and on `close()` ends) its own pool. Needs `pg`. */
  connectionString?: string;
  /** Schema of the store's table, created if missing. Default `'idem'`. */
  schema?: string;
  /** Table name. Default `'idem_records'`. */
  table?: string;
  /**
   * Milliseconds any operation may take, from the call to the answer, including waiting for
   * a connection; past it the operation rejects with `StoreUnavailableError`. On a pool the
   * store creates it is also the server-side `statement_timeout`. Default 5000.
   */
  statementTimeout?: number;
  /** Size of the pool the store creates from `connectionString`. Default 10. */
  max?: number;
  /**
   * Send the store's statements as named prepared statements: each connection parses and plans
   * them once, then only executes them (no parse per call). Set false behind a
   * connection pooler that cannot keep prepared statements per client, such as PgBouncer before
   * 1.21 in transaction mode. Default true.
   */
  preparedStatements?: boolean;
  /**
   * Wake waiters with LISTEN/NOTIFY. From the first `subscribe` until `close()` the store
   * holds one connection of the pool; set false for a pool of one connection. Default true.
   */
  listen?: boolean;
}

/** The Postgres store: the `Store` contract plus `ready()`. */
export interface PostgresStore extends Store {
  /** Creates or upgrades the schema now (otherwise the first operation does it). */
  ready(): Promise<void>;
  subscribe(id: string, onChange: () => void): () => void;
  close(): Promise<void>;
}

/** The largest outcome the store accepts: Postgres caps a TEXT value and a message at 1 GB. */
export const MAX_OUTCOME_BYTES = 1024 ** 3 - 1024 ** 2;

/**
 * A store backed by PostgreSQL (9.5 or later; tested on 15). Creates its schema on first use,
 * safely when many processes start at once.
 *
 * @example
 * import pg from 'pg';
 * import { createIdem } from 'idem';
 * import { postgresStore } from 'idem/postgres';
 *
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, statement_timeout: 5000 });
 * const idem = createIdem({ store: postgresStore({ pool }) });
 */
export function postgresStore(options: PostgresStoreOptions): PostgresStore {
  const o = validate(options);
  const channel = `idem_${createHash('sha256').update(`${o.schema}.${o.table}`).digest('hex').slice(0, 24)}`;
  const sql = statements(o.schema, o.table, channel);
  if (options.pool) guardPool(options.pool);
  let pool: Promise<PgPoolLike> | undefined = options.pool ? Promise.resolve(options.pool) : undefined;
  let schema: Promise<void> | undefined;
  let listener: Listener | undefined;
  let closed = false;

  const getPool = () => {
    pool ??= loadPg().then(
      (pg) => {
        const created = new pg.Pool({
          connectionString: o.connectionString,
          max: o.max,
          connectionTimeoutMillis: o.timeout,
          statement_timeout: o.timeout,
          keepAlive: true,
          application_name: 'idem',
        });
        created.on?.('error', () => {}); // an idle client died; the pool already dropped it
        guardPool(created);
        return created;
      },
      (err) => {
        pool = undefined;
        throw err;
      },
    );
    return pool;
  };

  /** The pool once the schema is known to be current: queries then skip the schema step. */
  let readyPool: PgPoolLike | undefined;
  const ready = () => {
    schema ??= getPool()
      .then(async (p) => {
        await ensureSchema(p, o.schema, o.table, o.timeout);
        readyPool = p;
      })
      .catch((err) => {
        schema = undefined; // try again on the next call
        throw err;
      });
    return schema;
  };

  const deadlines = createDeadlines(o.timeout);
  /** Prepared statement names: one per text, so two stores on other tables never share one. */
  const names = new Map<string, string>();
  const nameOf = (text: string) => {
    let name = names.get(text);
    if (name === undefined) {
      name = `idem_${createHash('sha256').update(text).digest('hex').slice(0, 32)}`;
      names.set(text, name);
    }
    return name;
  };
  /**
   * One statement on one pooled connection, within the deadline (which also covers waiting for a
   * connection and, on the first call, the schema step). On a timeout or an error the client is
   * destroyed, not returned: it may hold a running statement or a dead socket.
   */
  const query = (what: string, text: string, values: unknown[]): Promise<PgResultLike> => {
    if (closed) return Promise.reject(new StoreUnavailableError('postgres store: the store is closed'));
    return new Promise((resolve, reject) => {
      let client: PgClientLike | undefined;
      const d = deadlines.start(() => {
        client?.release(new Error(`idem: ${what} timed out`));
        reject(new StoreUnavailableError(`postgres store: ${what} did not answer within ${o.timeout} ms`));
      });
      const fail = (err: unknown) => {
        if (deadlines.end(d)) reject(unavailable(what, err));
      };
      const run = (pool: PgPoolLike) =>
        pool.connect().then((c) => {
          if (d.onExpire === undefined) return c.release(); // too late: straight back
          client = c;
          listenForErrors(c);
          c.query(o.prepared ? { name: nameOf(text), text, values } : { text, values }).then(
            (result) => {
              if (!deadlines.end(d)) return;
              c.release();
              resolve(result);
            },
            (err) => {
              if (!deadlines.end(d)) return;
              c.release(err instanceof Error ? err : new Error(String(err)));
              reject(unavailable(what, err));
            },
          );
        }, fail);
      try {
        if (readyPool) run(readyPool);
        else ready().then(getPool).then(run, fail);
      } catch (err) {
        fail(err);
      }
    });
  };

  return {
    name: 'postgres',
    ready,

    async claim(req: ClaimRequest): Promise<ClaimResult> {
      const values = [
        req.id,
        req.fingerprint,
        req.token,
        ms(req.leaseMs),
        ms(req.ttlMs),
        req.scopeHash ?? '',
      ];
      const row = (await query('claim', sql.claim, values)).rows[0];
      if (!row) throw new StoreUnavailableError('postgres store: claim answered no row');
      if (row.acquired) {
        const attempt = Number(row.attempt);
        return { status: 'acquired', attempt, leaseUntil: Number(row.lease_until), takeover: attempt > 1 };
      }
      return { status: 'existing', record: toRecord(req.id, row), now: Number(row.now_ms) };
    },

    async complete(id, token, outcome, ttlMs) {
      if (!token) return false; // '' marks a released record: nobody holds it
      const [text, escaped] = encodeOutcome(outcome);
      const bytes = Buffer.byteLength(text);
      if (bytes > MAX_OUTCOME_BYTES) throw new OutcomeTooLargeError(bytes, MAX_OUTCOME_BYTES);
      const r = await query('complete', sql.complete, [id, token, text, escaped, ms(ttlMs)]);
      return r.rows.length > 0;
    },

    async release(id, token, guardMs) {
      const guard = guardMsOf(guardMs);
      if (!token) return false;
      return (await query('release', sql.release, [id, token, guard])).rows.length > 0;
    },

    async renew(id, token, leaseMs) {
      if (!token) return undefined;
      const row = (await query('renew', sql.renew, [id, token, ms(leaseMs)])).rows[0];
      return row ? Number(row.lease_until) : undefined;
    },

    async get(id) {
      const row = (await query('get', sql.get, [id])).rows[0];
      return row ? toRecord(id, row) : undefined;
    },

    async purgeExpired(limit) {
      if (!Number.isInteger(limit) || limit < 0) {
        throw new InvalidOptionError(`purgeExpired: limit must be a non-negative integer, got ${limit}`);
      }
      let deleted = 0;
      while (deleted < limit) {
        const batch = Math.min(1000, limit - deleted);
        const n = (await query('purge', sql.purge, [batch])).rowCount ?? 0;
        deleted += n;
        if (n < batch) break;
      }
      return deleted;
    },

    inspect: {
      async list(opts) {
        checkListOptions(opts);
        const rows = (await query('list', sql.list, [opts.cursor ?? '', opts.limit])).rows;
        const now = Number(rows[0]?.now_ms ?? Date.now());
        const found = rows.filter((row) => row.id != null);
        const records = found.map(toListed).filter((r) => opts.state === undefined || r.state === opts.state);
        const cursor = found.length === opts.limit ? String(found.at(-1)?.id) : undefined;
        return { records, cursor, now };
      },
      async get(id) {
        const row = (await query('inspect get', sql.inspectGet, [id])).rows[0];
        return row ? toListed(row) : undefined;
      },
      async delete(id) {
        const row = (await query('delete', sql.remove, [id])).rows[0];
        return row?.live === true;
      },
    },

    counters: postgresCounters(query, o.schema, o.table),

    subscribe(id, onChange) {
      if (!o.listen || closed) return () => {};
      listener ??= createListener({
        pool: async () => {
          await ready();
          return getPool();
        },
        channel,
        timeoutMs: o.timeout,
      });
      return listener.subscribe(id, onChange);
    },

    async close() {
      if (closed) return;
      closed = true;
      await listener?.close();
      if (!options.pool && pool) await (await pool.catch(() => undefined))?.end();
    },
  };
}

// --- Internal helpers ---

function validate(options: PostgresStoreOptions) {
  if (!options || typeof options !== 'object')
    throw new InvalidOptionError('postgresStore: options required');
  if (!options.pool === !options.connectionString) {
    throw new InvalidOptionError('postgresStore: give exactly one of `pool` and `connectionString`');
  }
  const schema = options.schema ?? 'idem';
  const table = options.table ?? 'idem_records';
  for (const [name, value] of [
    ['schema', schema],
    ['table', table],
  ] as const) {
    if (typeof value !== 'string' || !IDENTIFIER.test(value)) {
      throw new InvalidOptionError(
        `postgresStore: ${name} must be 1-48 lowercase letters, digits or _ and not start with a digit, got ${JSON.stringify(value)}`,
      );
    }
  }
  if (options.preparedStatements !== undefined && typeof options.preparedStatements !== 'boolean') {
    throw new InvalidOptionError(
      `postgresStore: preparedStatements must be true or false, got ${JSON.stringify(options.preparedStatements)}`,
    );
  }
  const timeout = options.statementTimeout ?? 5000;
  if (!Number.isInteger(timeout) || timeout < 1) {
    throw new InvalidOptionError(
      `postgresStore: statementTimeout must be a positive integer of ms, got ${timeout}`,
    );
  }
  const max = options.max ?? 10;
  if (!Number.isInteger(max) || max < 1) {
    throw new InvalidOptionError(`postgresStore: max must be a positive integer, got ${max}`);
  }
  return {
    schema,
    table,
    timeout,
    max,
    listen: options.listen ?? true,
    prepared: options.preparedStatements ?? true,
    connectionString: options.connectionString,
  };
}

/** Durations go to bigint columns: whole, non-negative milliseconds. */
const ms = (n: number) => Math.max(0, Math.ceil(Number(n)));

/**
 * TEXT cannot hold NUL or unpaired surrogates, so such outcomes are stored JSON-escaped and
 * flagged; every other string is stored as is. Either way the same string comes back.
 */
function encodeOutcome(outcome: string): [string, boolean] {
  return outcome.isWellFormed() && !outcome.includes('\0')
    ? [outcome, false]
    : [JSON.stringify(outcome), true];
}

/** A row of `list` / `inspectGet` as listed. */
function toListed(row: Record<string, unknown>): ListedRecord {
  return listedRecordOf(toRecord(String(row.id), row), {
    outcomeBytes: Number(row.bytes),
    createdAt: Number(row.created_at),
    completedAt: Number(row.completed_at),
    scopeHash: String(row.scope),
  });
}

function toRecord(id: string, row: Record<string, unknown>): StoreRecord {
  const outcome = row.outcome == null ? undefined : String(row.outcome);
  return {
    id,
    state: row.state === 'completed' ? 'completed' : 'in_progress',
    fingerprint: String(row.fingerprint),
    token: String(row.token),
    attempt: Number(row.attempt),
    leaseUntil: Number(row.lease_until),
    expiresAt: Number(row.expires_at),
    outcome: outcome !== undefined && row.outcome_escaped ? (JSON.parse(outcome) as string) : outcome,
  };
}

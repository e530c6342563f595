/**
 * The SQL inbox on Postgres (`pg`): the mark and the handler share one transaction on one
 * client; a concurrent duplicate blocks on the row until the first commits, then sees it.
 *
 * @module
 */

import { InvalidOptionError, StoreUnavailableError } from '../../core/errors.ts';
import { guardPool } from '../pg-guard.ts';
import { abortedTransaction, errorColumn, outcomeColumn, type TxCall, type TxOutcome } from './shared.ts';

/** A query's result (`pg`'s; an array of them for several statements in one text). */
interface PgResult {
  rows: Record<string, unknown>[];
  rowCount: number | null;
  /** The command tag: `COMMIT` answers `ROLLBACK` when the transaction had failed. */
  command?: string;
}
/**
 * The `pg` client methods used (a `pg.Client` or a `PoolClient`).
 *
 * @example
 * const client: PgClientLike = await pool.connect();
 */
export interface PgClientLike {
  query(text: string, values?: unknown[]): Promise<PgResult>;
  /** When present (pg ≥ 8.11), BEGIN + mark and outcome + COMMIT each go in one round trip. */
  escapeLiteral?(value: string): string;
}
/**
 * A `pg.Pool`: a client is checked out per message.
 *
 * @example
 * const pool: PgPoolLike = new pg.Pool({ connectionString });
 */
export interface PgPoolLike extends PgClientLike {
  connect(): Promise<PgClientLike & { release(error?: Error | boolean): void }>;
  readonly totalCount: number;
}

const created = new WeakMap<object, Map<string, Promise<void>>>();

/** `CREATE TABLE IF NOT EXISTS` once per pool (or client) and table. */
function ensureTable(owner: object, client: PgClientLike, table: string): Promise<void> {
  const tables = created.get(owner) ?? new Map<string, Promise<void>>();
  created.set(owner, tables);
  let done = tables.get(table);
  if (!done) {
    done = client
      .query(
        `CREATE TABLE IF NOT EXISTS ${table} (consumer text NOT NULL, message_id text NOT NULL, state text NOT NULL,
          attempts integer NOT NULL, outcome text, error text, updated_at bigint NOT NULL, PRIMARY KEY (consumer, message_id))`,
      )
      .then(
        () => undefined,
        (error: { code?: string }) => {
          // two processes creating it at once: one loses on the catalog's unique index
          if (error?.code === '23505' || error?.code === '42P07') return;
          tables.delete(table);
          if (error?.code === '3F000') {
            throw new InvalidOptionError(
              `consumeOnceTx: cannot create the inbox table ${table}: its schema does not exist (create it first)`,
              { cause: error },
            );
          }
          throw error;
        },
      );
    tables.set(table, done);
  }
  return done;
}

const queues = new WeakMap<object, Promise<unknown>>();

interface Existing {
  state: 'processed' | 'parked';
  attempts: number;
  outcome: string | null;
  error: string | null;
}

/** Connection-level failures (the database is down or unreachable): node's and SQLSTATE 08xxx / 57Pxx. */
const DOWN = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE']);

function unreachable(error: unknown): never {
  const code = String((error as { code?: unknown })?.code ?? '');
  const message = String((error as Error)?.message ?? error);
  if (
    DOWN.has(code) ||
    /^(08|57P)/.test(code) ||
    /timeout exceeded when trying to connect|Connection terminated/i.test(message)
  ) {
    throw new StoreUnavailableError(`consumeOnceTx: the database is unreachable (${code || message})`, {
      cause: error,
    });
  }
  throw error;
}

/**
 * Runs one message on Postgres (what `consumeOnceTx` calls for a pg Pool or Client). A Pool
 * checks out a client per message; calls on one Client wait for each other, since two
 * transactions cannot share a connection.
 *
 * @example
 * const out = await postgresInbox(pool, call, (tx) => apply(tx));
 */
export function postgresInbox<T>(
  db: PgPoolLike | PgClientLike,
  call: TxCall,
  run: (tx: unknown, attempt: number) => T | Promise<T>,
): Promise<TxOutcome<T>> {
  const pool =
    typeof (db as PgPoolLike).connect === 'function' && 'totalCount' in db ? (db as PgPoolLike) : undefined;
  if (pool) {
    guardPool(pool);
    return once(pool, db, call, run);
  }
  const next = (queues.get(db) ?? Promise.resolve()).then(
    () => once(undefined, db, call, run),
    () => once(undefined, db, call, run),
  );
  queues.set(
    db,
    next.catch(() => {}),
  );
  return next;
}

async function once<T>(
  pool: PgPoolLike | undefined,
  db: PgPoolLike | PgClientLike,
  call: TxCall,
  run: (tx: unknown, attempt: number) => T | Promise<T>,
): Promise<TxOutcome<T>> {
  const client = pool ? await pool.connect().catch(unreachable) : db;
  const { table, consumer, messageId, maxAttempts, now } = call;
  let broken: Error | undefined;
  try {
    await ensureTable(pool ?? db, client, table).catch(unreachable);
    // With escapeLiteral, statements travel together (simple protocol, literals escaped by pg):
    // the mark costs no round trip of its own, only its row write.
    const lit = typeof client.escapeLiteral === 'function' ? client.escapeLiteral.bind(client) : undefined;
    const mark = (c: string, m: string, at: string) =>
      `INSERT INTO ${table} AS t (consumer, message_id, state, attempts, updated_at) VALUES (${c}, ${m}, 'processed', 1, ${at})
         ON CONFLICT (consumer, message_id) DO UPDATE SET state = 'processed', attempts = t.attempts + 1, updated_at = ${at}
         WHERE t.state = 'failed' RETURNING attempts`;
    let attempt: number;
    try {
      let claimed: PgResult;
      if (lit) {
        const both = (await client.query(
          `BEGIN; ${mark(lit(consumer), lit(messageId), String(now))}`,
        )) as unknown as PgResult[];
        claimed = both[1]!;
      } else {
        await client.query('BEGIN');
        claimed = await client.query(mark('$1', '$2', '$3'), [consumer, messageId, now]);
      }
      if (claimed.rowCount === 0) {
        await client.query('ROLLBACK');
        const { rows } = await client.query(
          `SELECT state, attempts, outcome, error FROM ${table} WHERE consumer = $1 AND message_id = $2`,
          [consumer, messageId],
        );
        return { kind: 'existing', ...(rows[0] as unknown as Existing) };
      }
      attempt = (claimed.rows[0] as { attempts: number }).attempts;
      const value = await run(client, attempt);
      const outcome = outcomeColumn(value);
      const setOutcome = (o: string, c: string, m: string) =>
        `UPDATE ${table} SET outcome = ${o} WHERE consumer = ${c} AND message_id = ${m}`;
      let commit: PgResult | PgResult[];
      if (outcome === null) commit = await client.query('COMMIT');
      else if (lit)
        commit = await client.query(`${setOutcome(lit(outcome), lit(consumer), lit(messageId))}; COMMIT`);
      else {
        await client.query(setOutcome('$3', '$1', '$2'), [consumer, messageId, outcome]);
        commit = await client.query('COMMIT');
      }
      // A statement that failed inside the handler (its error caught) aborts the transaction:
      // Postgres then answers COMMIT with ROLLBACK. Nothing was written: never `processed`.
      const tag = Array.isArray(commit) ? commit[commit.length - 1]?.command : commit.command;
      if (tag === 'ROLLBACK') throw abortedTransaction();
      return { kind: 'processed', value, attempt };
    } catch (error) {
      await client.query('ROLLBACK').catch((e: Error) => {
        broken = e;
      });
      if (broken) unreachable(error); // the connection failed: a StoreUnavailableError if that was the cause
      const { rows } = await client
        .query(
          `INSERT INTO ${table} AS t (consumer, message_id, state, attempts, error, updated_at)
         VALUES ($1, $2, CASE WHEN $4::int <= 1 OR $6::boolean THEN 'parked' ELSE 'failed' END, 1, $3, $5)
         ON CONFLICT (consumer, message_id) DO UPDATE SET attempts = t.attempts + 1, error = $3, updated_at = $5,
           state = CASE WHEN t.attempts + 1 >= $4::int OR $6::boolean THEN 'parked' ELSE 'failed' END
         WHERE t.state = 'failed' RETURNING attempts, state`,
          [consumer, messageId, errorColumn(error), maxAttempts, Date.now(), call.permanent(error)],
        )
        .catch(unreachable);
      const row = rows[0] as { attempts: number; state: string } | undefined;
      if (row) return { kind: 'failed', error, failures: row.attempts, parked: row.state === 'parked' };
      // Another delivery processed (or parked) the message while this run failed: answer its state.
      const seen = await client.query(
        `SELECT state, attempts, outcome, error FROM ${table} WHERE consumer = $1 AND message_id = $2`,
        [consumer, messageId],
      );
      const existing = seen.rows[0] as unknown as Existing | undefined;
      if (existing) return { kind: 'existing', ...existing };
      return { kind: 'failed', error, failures: 1, parked: false };
    }
  } finally {
    if (pool) (client as unknown as { release(e?: Error | boolean): void }).release(broken ?? false);
  }
}

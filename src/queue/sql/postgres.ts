/**
 * The SQL inbox on Postgres (`pg`): the mark and the handler share one transaction on one
 * client; a concurrent duplicate blocks on the row until the first commits, then sees it.
 *
 * @module
 */
import { errorColumn, outcomeColumn, type TxCall, type TxOutcome } from './shared.ts';

/** A query's result (`pg`'s; an array of them for several statements in one text). */
interface PgResult {
  rows: Record<string, unknown>[];
  rowCount: number | null;
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
          throw error;
        },
      );
    tables.set(table, done);
  }
  return done;
}

const queues = new WeakMap<object, Promise<unknown>>();

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
  if (pool) return once(pool, db, call, run);
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
  const client = pool ? await pool.connect() : db;
  const { table, consumer, messageId, maxAttempts, now } = call;
  let broken: Error | undefined;
  try {
    await ensureTable(pool ?? db, client, table);
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
        const row = rows[0] as {
          state: 'processed' | 'parked';
          attempts: number;
          outcome: string | null;
          error: string | null;
        };
        return { kind: 'existing', ...row };
      }
      attempt = (claimed.rows[0] as { attempts: number }).attempts;
      const value = await run(client, attempt);
      const outcome = outcomeColumn(value);
      const setOutcome = (o: string, c: string, m: string) =>
        `UPDATE ${table} SET outcome = ${o} WHERE consumer = ${c} AND message_id = ${m}`;
      if (outcome === null) await client.query('COMMIT');
      else if (lit) await client.query(`${setOutcome(lit(outcome), lit(consumer), lit(messageId))}; COMMIT`);
      else {
        await client.query(setOutcome('$3', '$1', '$2'), [consumer, messageId, outcome]);
        await client.query('COMMIT');
      }
      return { kind: 'processed', value, attempt };
    } catch (error) {
      await client.query('ROLLBACK').catch((e: Error) => {
        broken = e;
      });
      if (broken) throw error;
      const { rows } = await client.query(
        `INSERT INTO ${table} AS t (consumer, message_id, state, attempts, error, updated_at)
         VALUES ($1, $2, CASE WHEN $4::int <= 1 THEN 'parked' ELSE 'failed' END, 1, $3, $5)
         ON CONFLICT (consumer, message_id) DO UPDATE SET attempts = t.attempts + 1, error = $3, updated_at = $5,
           state = CASE WHEN t.attempts + 1 >= $4::int THEN 'parked' ELSE 'failed' END
         WHERE t.state = 'failed' RETURNING attempts, state`,
        [consumer, messageId, errorColumn(error), maxAttempts, Date.now()],
      );
      const row = (rows[0] as { attempts: number; state: string } | undefined) ?? {
        attempts: maxAttempts,
        state: 'parked',
      };
      return { kind: 'failed', error, failures: row.attempts, parked: row.state === 'parked' };
    }
  } finally {
    if (pool) (client as unknown as { release(e?: Error | boolean): void }).release(broken ?? false);
  }
}

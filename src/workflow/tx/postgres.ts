/**
 * `run.tx` on Postgres: the step's row and the user's writes commit in one transaction on the
 * user's `pg` client. The row's primary key makes a second attempt wait for the first's
 * commit (or rollback) and then find its row: never two commits of one step.
 *
 * @module
 */
import { type OutcomeCodec, plainCodec } from '../../core/encryption.ts';
import { InvalidOptionError } from '../../core/errors.ts';
import { decodeOutcome, encodeOutcome, reviveError } from '../../core/outcome.ts';
import type { StepContext } from '../ambient.ts';

/** The part of a `pg` `Client` / `PoolClient` that `run.tx` uses. */
export interface PgTxClient {
  query(
    text: string,
    values?: unknown[],
  ): Promise<{ rowCount: number | null; rows: Array<Record<string, unknown>> }>;
  connect(): unknown;
  /** pg ≥ 8.13: 'I' idle, 'T' in a transaction, 'E' in a failed transaction. */
  getTransactionStatus?(): string | null;
}

/**
 * The error for a client already inside a transaction: `run.tx` runs its own BEGIN … COMMIT,
 * and a COMMIT there would commit the caller's transaction (a SAVEPOINT would not help: the
 * step would be recorded done while the caller may still roll its effect back).
 *
 * @example
 * if (db.isTransaction) throw inTransaction('debit#1');
 */
export function inTransaction(stepId: string): InvalidOptionError {
  return new InvalidOptionError(
    `run.tx step "${stepId}": the client is already in a transaction; run.tx opens and commits its own, so pass a client outside one (another pool connection)`,
  );
}

/** Whether the pg session is inside a transaction block. */
async function inTransactionBlock(client: PgTxClient): Promise<boolean> {
  const status =
    typeof client.getTransactionStatus === 'function' ? client.getTransactionStatus() : undefined;
  if (status === 'I') return false;
  if (status === 'T' || status === 'E') return true;
  // an older pg: inside a block, now() is the block's start, earlier than this statement's
  const { rows } = await client.query('SELECT now() <> statement_timestamp() AS open');
  return rows[0]?.open === true;
}

const ready = new WeakMap<object, Set<string>>();

async function ensureTable(client: PgTxClient, table: string): Promise<void> {
  const done = ready.get(client) ?? new Set<string>();
  ready.set(client, done);
  if (done.has(table)) return;
  try {
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${table} (id text PRIMARY KEY, run_id text NOT NULL, step_id text NOT NULL, outcome text, created_at bigint NOT NULL)`,
    );
  } catch (error) {
    // two sessions creating the table at once: one wins, the other sees a duplicate type/table
    const code = (error as { code?: string }).code;
    if (code !== '23505' && code !== '42P07') throw error;
  }
  done.add(table);
}

/**
 * Runs `fn(client)` between BEGIN and COMMIT together with the step's row.
 *
 * @example
 * await pgTx(client, 'idem_journal_tx', ctx, (c) => c.query('UPDATE accounts SET n = n + 1'), fence);
 */
export async function pgTx<T>(
  client: PgTxClient,
  table: string,
  ctx: StepContext,
  fn: (client: PgTxClient) => T | Promise<T>,
  beforeCommit: () => Promise<void>,
  codec: OutcomeCodec = plainCodec,
): Promise<T> {
  if (await inTransactionBlock(client)) throw inTransaction(ctx.stepId);
  await ensureTable(client, table);
  await client.query('BEGIN');
  try {
    const inserted = await client.query(
      `INSERT INTO ${table} (id, run_id, step_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING id`,
      [ctx.downstreamKey, ctx.runId, ctx.stepId, Date.now()],
    );
    if (inserted.rowCount === 0) {
      // committed by an earlier attempt (the insert waited for it): its value, not a second effect
      const { rows } = await client.query(`SELECT outcome FROM ${table} WHERE id = $1`, [ctx.downstreamKey]);
      await client.query('ROLLBACK');
      return decoded<T>(codec.open(ctx.downstreamKey, rows[0]?.outcome as string));
    }
    const value = await fn(client);
    await client.query(`UPDATE ${table} SET outcome = $2 WHERE id = $1`, [
      ctx.downstreamKey,
      codec.seal(ctx.downstreamKey, encodeOutcome({ kind: 'value', value })),
    ]);
    await beforeCommit(); // a zombie invocation rolls back instead of committing
    await client.query('COMMIT');
    return value;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** A stored value as the step's caller gets it. */
export function decoded<T>(stored: string): T {
  const outcome = decodeOutcome(stored);
  if (outcome.kind === 'error') throw reviveError(outcome.error);
  if (outcome.kind !== 'value') throw new Error(`run.tx row holds no value (${outcome.kind})`);
  return outcome.value as T;
}

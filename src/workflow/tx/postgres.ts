/**
 * `run.tx` on Postgres: the step's row and the user's writes commit in one transaction on the
 * user's `pg` client. The row's primary key makes a second attempt wait for the first's
 * commit (or rollback) and then find its row: never two commits of one step.
 *
 * @module
 */
import { type OutcomeCodec, plainCodec } from '../../core/encryption.ts';
import { decodeOutcome, encodeOutcome, reviveError } from '../../core/outcome.ts';
import type { StepContext } from '../ambient.ts';

/** The part of a `pg` `Client` / `PoolClient` that `run.tx` uses. */
export interface PgTxClient {
  query(
    text: string,
    values?: unknown[],
  ): Promise<{ rowCount: number | null; rows: Array<Record<string, unknown>> }>;
  connect(): unknown;
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

/**
 * `run.tx`: a step whose record commits in the same database transaction as its effect.
 *
 * ```
 * BEGIN
 *   insert the step's row (run + step occurrence, by its downstream key)
 *     row already there (committed by an earlier attempt) ─▶ ROLLBACK, answer its stored value
 *   fn(client)                    the user's writes, in this transaction
 *   store fn's value in the row
 *   fence: this invocation still holds the run, or ROLLBACK
 * COMMIT                           effect and record together, or neither
 * ```
 *
 * A crash before COMMIT rolls back both; a crash after it leaves both, and the retried step
 * finds the row and returns the stored value without running `fn` again: exactly once.
 *
 * @module
 */
import { type OutcomeCodec, plainCodec } from '../../core/encryption.ts';
import { InvalidOptionError } from '../../core/errors.ts';
import type { StepContext } from '../ambient.ts';
import { type PgTxClient, pgTx } from './postgres.ts';
import { type SqliteTxClient, sqliteTx } from './sqlite.ts';

export type { PgTxClient } from './postgres.ts';
export type { SqliteTxClient } from './sqlite.ts';

/** A `pg` client (`Client` or a `PoolClient` checked out of a pool) or a `node:sqlite` `DatabaseSync`. */
export type TxClient = PgTxClient | SqliteTxClient;

const TABLE = /^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/;
export const DEFAULT_TX_TABLE = 'idem_journal_tx';

/**
 * Runs `fn(client)` in a transaction on `client` that also records the step (keyed by
 * `ctx.downstreamKey`), or answers the value an earlier attempt committed.
 *
 * @example
 * const v = await txStep(pgClient, ctx, (c) => c.query('INSERT INTO ledger VALUES ($1)', [1]));
 */
export async function txStep<T>(
  client: TxClient,
  ctx: StepContext,
  fn: (client: TxClient) => T | Promise<T>,
  table: string = DEFAULT_TX_TABLE,
  beforeCommit: () => Promise<void> = async () => {},
  codec: OutcomeCodec = plainCodec,
): Promise<T> {
  if (typeof table !== 'string' || !TABLE.test(table)) {
    throw new InvalidOptionError(
      `run.tx table must be an SQL identifier (optionally schema.table), got ${JSON.stringify(table)}`,
    );
  }
  if (isSqlite(client))
    return sqliteTx(client, table, ctx, fn as (c: SqliteTxClient) => T | Promise<T>, beforeCommit, codec);
  if (isPg(client))
    return pgTx(client, table, ctx, fn as (c: PgTxClient) => T | Promise<T>, beforeCommit, codec);
  throw new InvalidOptionError(
    'run.tx needs a pg client (Client, or a PoolClient from pool.connect()) or a node:sqlite DatabaseSync',
  );
}

function isSqlite(c: unknown): c is SqliteTxClient {
  return (
    typeof (c as SqliteTxClient)?.prepare === 'function' && typeof (c as SqliteTxClient)?.exec === 'function'
  );
}

function isPg(c: unknown): c is PgTxClient {
  return (
    typeof (c as PgTxClient)?.query === 'function' &&
    typeof (c as { connect?: unknown }).connect === 'function' &&
    !('totalCount' in (c as object))
  );
}

/**
 * `run.tx` on SQLite (`node:sqlite` `DatabaseSync`): `BEGIN IMMEDIATE` takes the write lock,
 * so the step's row and the user's writes commit together and a second attempt (another
 * process on the same file) finds the row instead of running again.
 *
 * @module
 */
import { type OutcomeCodec, plainCodec } from '../../core/encryption.ts';
import { encodeOutcome } from '../../core/outcome.ts';
import type { StepContext } from '../ambient.ts';
import { decoded, inTransaction } from './postgres.ts';

/** The part of a `node:sqlite` `DatabaseSync` that `run.tx` uses. */
export interface SqliteTxClient {
  exec(sql: string): void;
  prepare(sql: string): {
    get(...params: Array<string | number | null>): unknown;
    run(...params: Array<string | number | null>): unknown;
  };
  readonly isTransaction: boolean;
}

const ready = new WeakMap<object, Set<string>>();

/**
 * Runs `fn(db)` inside `BEGIN IMMEDIATE … COMMIT` together with the step's row.
 *
 * @example
 * await sqliteTx(db, 'idem_journal_tx', ctx, (d) => d.prepare('INSERT INTO ledger VALUES (1)').run(), fence);
 */
export async function sqliteTx<T>(
  db: SqliteTxClient,
  table: string,
  ctx: StepContext,
  fn: (db: SqliteTxClient) => T | Promise<T>,
  beforeCommit: () => Promise<void>,
  codec: OutcomeCodec = plainCodec,
): Promise<T> {
  if (db.isTransaction) throw inTransaction(ctx.stepId);
  const done = ready.get(db) ?? new Set<string>();
  ready.set(db, done);
  if (!done.has(table)) {
    db.exec(
      `CREATE TABLE IF NOT EXISTS ${table} (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, outcome TEXT NOT NULL, created_at INTEGER NOT NULL)`,
    );
    done.add(table);
  }
  db.exec('BEGIN IMMEDIATE');
  try {
    const row = db.prepare(`SELECT outcome FROM ${table} WHERE id = ?`).get(ctx.downstreamKey) as
      | { outcome: string }
      | undefined;
    if (row) {
      db.exec('ROLLBACK');
      return decoded<T>(codec.open(ctx.downstreamKey, row.outcome));
    }
    const value = await fn(db);
    db.prepare(`INSERT INTO ${table} (id, run_id, step_id, outcome, created_at) VALUES (?, ?, ?, ?, ?)`).run(
      ctx.downstreamKey,
      ctx.runId,
      ctx.stepId,
      codec.seal(ctx.downstreamKey, encodeOutcome({ kind: 'value', value })),
      Date.now(),
    );
    await beforeCommit(); // a zombie invocation rolls back instead of committing
    db.exec('COMMIT');
    return value;
  } catch (error) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw error;
  }
}

/**
 * `idem/inbox-sql`: the SQL fast path of the inbox. When a message's effects live in the same
 * Postgres or SQLite database as the inbox, the processed mark is written in the handler's own
 * transaction: both commit or neither does. That is exactly-once for database effects (a
 * crash anywhere rolls back both; the redelivery runs again from a clean state); effects
 * outside the database stay at-least-once (pass `ctx.downstreamKey` to them).
 *
 * ```
 * BEGIN
 *   INSERT INTO idem_inbox (consumer, message_id, 'processed') ON CONFLICT … WHERE state = 'failed'
 *     no row ─▶ ROLLBACK; answer duplicate / parked (a concurrent duplicate waits on the row lock)
 *   handler(tx)          ─ throws ─▶ ROLLBACK; count the failure (own statement); retry or park
 * COMMIT                 ─▶ processed
 * ```
 *
 * @module
 */
import { InvalidKeyError, InvalidOptionError } from '../../core/errors.ts';
import { deriveKey, downstreamKeyOf, recordIdOf } from '../../core/keys.ts';
import { isDefinitiveFailure, serializeError } from '../../core/outcome.ts';
import { type PgClientLike, type PgPoolLike, postgresInbox } from './postgres.ts';
import { readOutcome, type TxCall, type TxOutcome } from './shared.ts';
import { type SqliteDatabaseLike, sqliteInbox } from './sqlite.ts';

export type { PgClientLike, PgPoolLike } from './postgres.ts';
export type { SqliteDatabaseLike } from './sqlite.ts';

/**
 * What the transactional handler receives besides the transaction.
 *
 * @example
 * await consumeOnceTx(pool, ref, (tx, ctx: TxContext) => tx.query('INSERT INTO seen VALUES ($1)', [ctx.messageId]));
 */
export interface TxContext {
  consumer: string;
  messageId: string;
  /** 1 + the failed runs of this message recorded so far. */
  attempt: number;
  /** Stable per consumer + message (the same as `consumeOnce`'s): for effects outside the database. */
  downstreamKey: string;
}

/**
 * The answer of {@link consumeOnceTx}: the same `next` contract as `consumeOnce`.
 *
 * @example
 * const r: TxConsumeResult<void> = await consumeOnceTx(db, ref, apply);
 * if (r.next === 'ack') channel.ack(msg);
 */
export type TxConsumeResult<T> =
  | { status: 'processed'; next: 'ack'; duplicate: false; value: T; attempt: number }
  | { status: 'duplicate'; next: 'ack'; duplicate: true; value: T | undefined; attempt: number }
  | {
      status: 'parked';
      next: 'dead_letter';
      duplicate: boolean;
      error: { name: string; message: string };
      attempts: number;
    }
  | {
      status: 'retry';
      next: 'retry';
      duplicate: false;
      reason: 'failed';
      error: unknown;
      attempts: number;
      retryAfterMs: number;
    };

/**
 * Options of {@link consumeOnceTx}.
 *
 * @example
 * const options: TxConsumeOptions = { table: 'billing.idem_inbox', maxAttempts: 3 };
 */
export interface TxConsumeOptions {
  /** The inbox table, created on first use. Default `idem_inbox` (Postgres: may be `schema.table`). */
  table?: string;
  /** Failed runs before the message is parked. Default 5. */
  maxAttempts?: number;
  /** Delay before a failed message is retried, by failed runs so far. Default 500 ms × 2^(n−1), at most 30 s. */
  retryDelay?: (failures: number) => number;
  /** Classifies errors that park at once (like `definitive()`-wrapped ones, which always do). */
  definitive?: (error: unknown) => boolean;
}

const TABLE = /^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$/;
const KNOWN = ['table', 'maxAttempts', 'retryDelay', 'definitive'];

/**
 * Runs `handler(tx, ctx)` inside a transaction that also marks the message processed, on a
 * `pg` Pool / Client (Postgres) or a `node:sqlite` DatabaseSync. Answers like `consumeOnce`.
 *
 * @example
 * import { consumeOnceTx } from 'idem/inbox-sql';
 * const r = await consumeOnceTx(pool, { consumer: 'ledger', messageId: msg.properties.messageId }, (tx) =>
 *   tx.query('UPDATE accounts SET balance = balance + $1 WHERE id = $2', [amount, account]));
 * if (r.next === 'ack') channel.ack(msg);
 */
export async function consumeOnceTx<T, Tx = PgClientLike>(
  db: PgPoolLike | PgClientLike | SqliteDatabaseLike,
  ref: { consumer: string; messageId: string },
  handler: (tx: Tx, ctx: TxContext) => T | Promise<T>,
  options: TxConsumeOptions = {},
): Promise<TxConsumeResult<T>> {
  for (const name of ['consumer', 'messageId'] as const) {
    const v = ref?.[name];
    if (typeof v !== 'string' || v.length === 0 || v.length > 4096) {
      throw new InvalidKeyError(
        `consumeOnceTx: ${name} must be a non-empty string of at most 4096 characters`,
      );
    }
    // Postgres text cannot hold NUL, and a lone surrogate does not survive UTF-8: refuse both
    // here, before touching the database.
    if (v.includes('\u0000') || !v.isWellFormed()) {
      throw new InvalidKeyError(
        `consumeOnceTx: ${name} must not contain NUL bytes or lone surrogates, got ${JSON.stringify(v.slice(0, 80))}`,
      );
    }
  }
  if (typeof handler !== 'function')
    throw new InvalidOptionError('consumeOnceTx: handler must be a function');
  for (const name of Object.keys(options ?? {})) {
    if (!KNOWN.includes(name))
      throw new InvalidOptionError(`consumeOnceTx: unknown option ${name} (known: ${KNOWN.join(', ')})`);
  }
  const { table = 'idem_inbox', maxAttempts = 5, retryDelay = defaultRetryDelay, definitive } = options ?? {};
  for (const [name, fn] of [
    ['retryDelay', retryDelay],
    ['definitive', definitive],
  ] as const) {
    if (fn !== undefined && typeof fn !== 'function')
      throw new InvalidOptionError(`consumeOnceTx: ${name} must be a function, got ${typeof fn}`);
  }
  if (!TABLE.test(table))
    throw new InvalidOptionError(`consumeOnceTx: table must match ${TABLE}, got ${table}`);
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 1000) {
    throw new InvalidOptionError(
      `consumeOnceTx: maxAttempts must be an integer from 1 to 1000, got ${maxAttempts}`,
    );
  }
  const { consumer, messageId } = ref;
  const permanent = (error: unknown) => isDefinitiveFailure(error, definitive);
  const call: TxCall = { table, consumer, messageId, maxAttempts, now: Date.now(), permanent };
  const downstreamKey = downstreamKeyOf(recordIdOf([], deriveKey('inbox', [consumer, messageId])));
  const run = (tx: unknown, attempt: number) =>
    handler(tx as Tx, { consumer, messageId, attempt, downstreamKey });

  let out: TxOutcome<T>;
  if (isSqlite(db)) {
    if (table.includes('.')) throw new InvalidOptionError('consumeOnceTx: a SQLite table takes no schema');
    out = await sqliteInbox(db, call, run);
  } else if (db && typeof (db as PgClientLike).query === 'function') out = await postgresInbox(db, call, run);
  else throw new InvalidOptionError('consumeOnceTx needs a pg Pool or Client, or a node:sqlite DatabaseSync');

  switch (out.kind) {
    case 'processed':
      return { status: 'processed', next: 'ack', duplicate: false, value: out.value, attempt: out.attempt };
    case 'existing':
      if (out.state === 'parked') {
        return {
          status: 'parked',
          next: 'dead_letter',
          duplicate: true,
          error: parseError(out.error),
          attempts: out.attempts,
        };
      }
      return {
        status: 'duplicate',
        next: 'ack',
        duplicate: true,
        value: readOutcome(out.outcome) as T | undefined,
        attempt: out.attempts,
      };
    default:
      if (out.parked) {
        const { name, message } = serializeError(out.error);
        return {
          status: 'parked',
          next: 'dead_letter',
          duplicate: false,
          error: { name, message },
          attempts: out.failures,
        };
      }
      return {
        status: 'retry',
        next: 'retry',
        duplicate: false,
        reason: 'failed',
        error: out.error,
        attempts: out.failures,
        retryAfterMs: checkDelay(retryDelay(out.failures)),
      };
  }
}

function parseError(stored: string | null): { name: string; message: string } {
  try {
    return stored
      ? (JSON.parse(stored) as { name: string; message: string })
      : { name: 'Error', message: 'parked' };
  } catch {
    return { name: 'Error', message: String(stored) };
  }
}

function isSqlite(db: unknown): db is SqliteDatabaseLike {
  const d = db as SqliteDatabaseLike;
  return (
    typeof d?.prepare === 'function' &&
    typeof d.exec === 'function' &&
    typeof (db as PgClientLike).query !== 'function'
  );
}

function defaultRetryDelay(failures: number): number {
  return Math.min(30_000, 500 * 2 ** Math.max(0, failures - 1));
}

function checkDelay(ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new InvalidOptionError(
      `consumeOnceTx: retryDelay must answer a finite number of milliseconds ≥ 0, got ${String(ms)}`,
    );
  }
  return ms;
}

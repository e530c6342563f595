/**
 * What the SQL inbox backends share: the resolved call, what they answer, and the column
 * encodings.
 *
 * @module
 */
import { decodeOutcome, encodeOutcome, serializeError } from '../../core/outcome.ts';

/**
 * The resolved call every backend runs.
 *
 * @example
 * const call: TxCall = { table: 'idem_inbox', consumer: 'c', messageId: 'm', maxAttempts: 5, now: Date.now() };
 */
export interface TxCall {
  table: string;
  consumer: string;
  messageId: string;
  maxAttempts: number;
  now: number;
  /** True for an error that parks at once (`definitive()`, or the `definitive` option). */
  permanent: (error: unknown) => boolean;
}

/**
 * What a backend answers: the row's state after its statements.
 *
 * @example
 * if (out.kind === 'existing' && out.state === 'parked') deadLetter();
 */
export type TxOutcome<T> =
  | { kind: 'processed'; value: T; attempt: number }
  | {
      kind: 'existing';
      state: 'processed' | 'parked';
      attempts: number;
      outcome: string | null;
      error: string | null;
    }
  | { kind: 'failed'; error: unknown; failures: number; parked: boolean };

/**
 * The error column: `{ name, message }` as JSON.
 *
 * @example
 * errorColumn(new Error('boom')) // '{"name":"Error","message":"boom"}'
 */
export function errorColumn(error: unknown): string {
  const { name, message } = serializeError(error);
  return JSON.stringify({ name, message });
}

/**
 * A value for the outcome column, encoded like the engine's outcomes (`encodeOutcome`: Dates,
 * BigInts, Maps… round-trip), or null (undefined, or not serializable).
 *
 * @example
 * outcomeColumn({ id: 1 }) // 'j1:{"id":1}'
 */
export function outcomeColumn(value: unknown): string | null {
  try {
    return value === undefined ? null : encodeOutcome({ kind: 'value', value });
  } catch {
    return null;
  }
}

/**
 * Reads the outcome column back: the engine's encoding, or plain JSON (rows written before it).
 *
 * @example
 * readOutcome('j1:{"id":1}') // { id: 1 }
 */
export function readOutcome(stored: string | null): unknown {
  if (stored === null) return undefined;
  if (stored.startsWith('j1:') || stored.startsWith('i1:')) {
    const out = decodeOutcome(stored);
    return out.kind === 'value' ? out.value : undefined;
  }
  return JSON.parse(stored);
}

/**
 * The error that replaces a handler's value when its transaction could not commit.
 *
 * @example
 * if (commit.command === 'ROLLBACK') throw abortedTransaction();
 */
export function abortedTransaction(): Error {
  return new Error(
    'consumeOnceTx: the transaction was aborted (a statement failed inside the handler and its error was caught), so COMMIT rolled back: nothing was written. Use a SAVEPOINT around statements that may fail',
  );
}

/**
 * What the SQL inbox backends share: the resolved call, what they answer, and the column
 * encodings.
 *
 * @module
 */
import { serializeError } from '../../core/outcome.ts';

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
 * A value for the outcome column: JSON, or null (undefined, or not JSON-serializable).
 *
 * @example
 * outcomeColumn({ id: 1 }) // '{"id":1}'
 */
export function outcomeColumn(value: unknown): string | null {
  try {
    return value === undefined ? null : (JSON.stringify(value) ?? null);
  } catch {
    return null;
  }
}

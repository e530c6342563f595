/**
 * What the SQL inbox backends share: the resolved call, what they answer, and the column
 * encodings.
 *
 * @module
 */
import { serializeError } from '../../core/outcome.ts';

/** The resolved call every backend runs. */
export interface TxCall {
  table: string;
  consumer: string;
  messageId: string;
  maxAttempts: number;
  now: number;
}

/** What a backend answers: the row's state after its statements. */
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

/** The error column: `{ name, message }` as JSON. */
export function errorColumn(error: unknown): string {
  const { name, message } = serializeError(error);
  return JSON.stringify({ name, message });
}

/** A value for the outcome column: JSON, or null (undefined, or not JSON-serializable). */
export function outcomeColumn(value: unknown): string | null {
  try {
    return value === undefined ? null : (JSON.stringify(value) ?? null);
  } catch {
    return null;
  }
}

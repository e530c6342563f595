/**
 * The `error.type` attribute (OpenTelemetry semantic conventions) of an error.
 *
 * @module
 */
import { isIdemError } from '../core/errors.ts';

/**
 * An idem error's code, else the error's class name, else `_OTHER`.
 *
 * @example
 * errorType(new InProgressError(1000)) // 'in_progress'
 */
export function errorType(error: unknown): string {
  if (isIdemError(error)) return error.code;
  if (error instanceof Error) return error.name || 'Error';
  return '_OTHER';
}

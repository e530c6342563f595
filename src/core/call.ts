/**
 * One `execute` call with its options checked and merged over the instance defaults: what the
 * turn (turn.ts) and the holder (holder.ts) both read.
 *
 * @module
 */
import type { InProgressPolicy } from './options.ts';
import type { Action, RunOptions } from './types.ts';

/** One `execute` call, its options resolved against the instance defaults. */
export interface Call<T> {
  key: string;
  action: Action<T>;
  opts: RunOptions<T>;
  recordId: string;
  /** The scope hash stored with the record (`scopeHashOf`), '' when unscoped. */
  scopeHash: string;
  fingerprint: string;
  policy: InProgressPolicy;
  leaseMs: number;
  ttlMs: number;
  waitMs: number;
  releaseGuardMs: number;
}

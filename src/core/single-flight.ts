/**
 * Single-flight within one process: the first call for a record claims it; every other call
 * for that record joins the first one's promise instead of touching the store, keeping its
 * own policy and deadline.
 *
 * ```
 * call 1 ─▶ start(): claiming ─▶ holder | waiting (on another process) ─▶ done
 * call 2 ─▶ join():  'reject' and call 1 holds or waits ─▶ InProgressError (no store call)
 *                    otherwise await call 1 (until call 2's own deadline) ─▶ its value, replayed
 *                    call 1 released the key, or gave up while call 2 may still wait ─▶ claim again
 * ```
 *
 * @module
 */
import { withDeadline } from './deadline.ts';
import { FingerprintMismatchError, InProgressError } from './errors.ts';
import type { IdemEvent } from './events.ts';
import { sameFingerprint } from './keys.ts';
import type { InProgressPolicy } from './options.ts';
import type { ExecuteResult } from './types.ts';

/** What a call for a record in flight in this process knows about it. */
export interface Inflight {
  fingerprint: string;
  /** 'claiming' until the first claim answers; then holding, waiting on another process, or done. */
  state: 'claiming' | 'holder' | 'waiting' | 'done';
  /** Resolves when state leaves 'claiming'. */
  claimed: Promise<void>;
  /** Local estimate of when the holder's lease ends (renewed by the heartbeat and by re-claims). */
  leaseEnd: number;
  /** Set when the holder released the key (error, releaseIf): joiners must claim for themselves. */
  released: boolean;
  result: Promise<ExecuteResult<unknown>>;
}

/** Moves an in-flight entry to `state` (and a lease end); leaving 'claiming' wakes joiners. */
export type SetState = (state: Inflight['state'], leaseEnd?: number) => void;

/** What a joining call brings: its record, fingerprint, policy and wait budget. */
export interface Joiner {
  recordId: string;
  fingerprint: string;
  policy: InProgressPolicy;
  waitMs: number;
}

/** The in-flight calls of one engine. */
export interface SingleFlight {
  /** The call in flight for `recordId`, if any. */
  get(recordId: string): Inflight | undefined;
  /** Registers the first call for a record and runs it; the entry goes when `run` settles. */
  start<T>(
    recordId: string,
    fingerprint: string,
    run: (entry: Inflight, setState: SetState) => Promise<ExecuteResult<T>>,
  ): Promise<ExecuteResult<T>>;
  /**
   * Joins `shared` without a store call. `again(waitMs)` runs the call for itself, with what
   * is left of its wait budget, when the shared result is not its to take.
   */
  join<T>(
    shared: Inflight,
    call: Joiner,
    again: (waitMs: number) => Promise<ExecuteResult<T>>,
  ): Promise<ExecuteResult<T>>;
}

/**
 * Creates the in-flight registry of one engine.
 *
 * @example
 * const flights = createSingleFlight(emit);
 * const shared = flights.get(recordId);
 * return shared ? flights.join(shared, call, again) : flights.start(recordId, fp, claimAndRun);
 */
export function createSingleFlight(emit: ((event: IdemEvent) => void) | undefined): SingleFlight {
  const inflight = new Map<string, Inflight>();

  return {
    get: (recordId) => inflight.get(recordId),

    start(recordId, fingerprint, run) {
      let leaveClaiming!: () => void;
      const entry: Inflight = {
        fingerprint,
        state: 'claiming',
        claimed: new Promise<void>((resolve) => (leaveClaiming = resolve)),
        leaseEnd: 0,
        released: false,
        result: undefined as never,
      };
      const setState: SetState = (state, leaseEnd = entry.leaseEnd) => {
        entry.state = state;
        entry.leaseEnd = leaseEnd;
        leaveClaiming();
      };
      const result = (async () => {
        try {
          return await run(entry, setState);
        } finally {
          setState('done');
          inflight.delete(recordId);
        }
      })();
      entry.result = result;
      inflight.set(recordId, entry);
      return result;
    },

    async join(shared, call, again) {
      const { recordId } = call;
      if (!sameFingerprint(shared.fingerprint, call.fingerprint)) {
        emit?.({ type: 'mismatch', recordId });
        throw new FingerprintMismatchError();
      }
      // monotonic: a wall clock stepped back must not stretch this call's wait budget
      const deadline = performance.now() + call.waitMs;
      const retry = () => again(Math.max(0, deadline - performance.now()));
      if (call.policy === 'reject') {
        await shared.claimed;
        if (shared.state === 'holder' || shared.state === 'waiting') {
          emit?.({ type: 'in_progress', recordId });
          throw new InProgressError(shared.leaseEnd - Date.now());
        }
      }
      let r: ExecuteResult<unknown>;
      try {
        r = await withDeadline(shared.result, deadline - performance.now(), () => {
          emit?.({ type: 'in_progress', recordId });
          return new InProgressError(shared.leaseEnd - Date.now(), 'gave up waiting for the holder');
        });
      } catch (error) {
        const mayStillWait =
          call.policy === 'wait' && error instanceof InProgressError && deadline > performance.now();
        if (shared.released || (mayStillWait && inflight.get(recordId) !== shared)) return retry();
        throw error;
      }
      if (shared.released) return retry(); // a releaseIf value is not ours to share
      emit?.({ type: 'replayed', recordId, attempt: r.attempt, shared: true });
      return { ...(r as ExecuteResult<never>), replayed: true };
    },
  };
}

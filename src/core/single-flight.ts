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
  recordId: string;
  fingerprint: string;
  /** 'claiming' until the first claim answers; then holding, waiting on another process, or done. */
  state: 'claiming' | 'holder' | 'waiting' | 'done';
  /** Local estimate of when the holder's lease ends (renewed by the heartbeat and by re-claims). */
  leaseEnd: number;
  /** Set when the holder released the key (error, releaseIf): joiners must claim for themselves. */
  released: boolean;
  /** Joiners waiting for state to leave 'claiming'; made by the first one that waits. */
  claimWaiters: Array<() => void> | undefined;
  /** The result for joiners; made by the first one that asks, so a lone call allocates none. */
  shared: Deferred | undefined;
  /** Once 'done': the first call's result, or undefined when it failed with `error`. */
  value: ExecuteResult<unknown> | undefined;
  error: unknown;
}

interface Deferred {
  promise: Promise<ExecuteResult<unknown>>;
  resolve(value: ExecuteResult<unknown>): void;
  reject(error: unknown): void;
}

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
  /** Registers the first call for a record; end it with {@link SingleFlight.end}. */
  begin(recordId: string, fingerprint: string): Inflight;
  /** Moves an entry to `state` (and a lease end); leaving 'claiming' wakes joiners. */
  setState(entry: Inflight, state: Inflight['state'], leaseEnd?: number): void;
  /** The first call settled: joiners get its result (or error) and the entry goes. */
  end(entry: Inflight, value: ExecuteResult<unknown> | undefined, error?: unknown): void;
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
 * if (shared) return flights.join(shared, call, again);
 * const entry = flights.begin(recordId, fp);
 * try { const r = await claimAndRun(entry); flights.end(entry, r); return r }
 * catch (e) { flights.end(entry, undefined, e); throw e }
 */
export function createSingleFlight(emit: ((event: IdemEvent) => void) | undefined): SingleFlight {
  const inflight = new Map<string, Inflight>();

  const wakeClaimWaiters = (entry: Inflight) => {
    const waiters = entry.claimWaiters;
    if (!waiters) return;
    entry.claimWaiters = undefined;
    for (const wake of waiters) wake();
  };
  /** Resolves once the entry has left 'claiming'. */
  const claimed = (entry: Inflight): Promise<void> => {
    if (entry.state !== 'claiming') return Promise.resolve();
    entry.claimWaiters ??= [];
    const waiters = entry.claimWaiters;
    return new Promise<void>((resolve) => {
      waiters.push(resolve);
    });
  };
  /** The first call's result, as a promise made on demand. */
  const resultOf = (entry: Inflight): Promise<ExecuteResult<unknown>> => {
    if (entry.state === 'done') {
      return entry.value ? Promise.resolve(entry.value) : Promise.reject(entry.error);
    }
    if (!entry.shared) {
      let resolve!: Deferred['resolve'];
      let reject!: Deferred['reject'];
      const promise = new Promise<ExecuteResult<unknown>>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      entry.shared = { promise, resolve, reject };
    }
    return entry.shared.promise;
  };

  return {
    get: (recordId) => inflight.get(recordId),

    begin(recordId, fingerprint) {
      const entry: Inflight = {
        recordId,
        fingerprint,
        state: 'claiming',
        leaseEnd: 0,
        released: false,
        claimWaiters: undefined,
        shared: undefined,
        value: undefined,
        error: undefined,
      };
      inflight.set(recordId, entry);
      return entry;
    },

    setState(entry, state, leaseEnd = entry.leaseEnd) {
      entry.state = state;
      entry.leaseEnd = leaseEnd;
      wakeClaimWaiters(entry);
    },

    end(entry, value, error) {
      entry.state = 'done';
      wakeClaimWaiters(entry);
      if (inflight.get(entry.recordId) === entry) inflight.delete(entry.recordId);
      entry.value = value;
      entry.error = error;
      if (entry.shared) {
        if (value === undefined) entry.shared.reject(error);
        else entry.shared.resolve(value);
      }
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
        await claimed(shared);
        if (shared.state === 'holder' || shared.state === 'waiting') {
          emit?.({ type: 'in_progress', recordId });
          throw new InProgressError(shared.leaseEnd - Date.now());
        }
      }
      let r: ExecuteResult<unknown>;
      try {
        r = await withDeadline(resultOf(shared), deadline - performance.now(), () => {
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

/**
 * Claiming, and waiting for a turn when another holder is running.
 *
 * Waiters re-claim (one round trip that also takes over an expired lease or a released key)
 * with capped exponential backoff: 25 ms, 50, 100, 200, 400, 800, then every 1 s, each
 * ±20 % jitter, never sleeping past the holder's lease end or the wait deadline. A store that
 * can `subscribe` wakes waiters as soon as the holder completes or releases.
 *
 * @module
 */
import type { ClaimResult, Store, StoreRecord } from './store.ts';

export const WAIT_FIRST_MS = 25;
export const WAIT_MAX_MS = 1000;

/** The outcome of trying to take a key. */
export type Turn =
  /** `sentAt`: `performance.now()` when the winning claim was sent. */
  | { kind: 'acquired'; token: string; attempt: number; takeover: boolean; sentAt: number }
  | { kind: 'completed'; record: StoreRecord; now: number }
  | { kind: 'busy'; retryAfterMs: number; timedOut: boolean };

/** One claim sent and its answer. */
export interface Claimed {
  result: ClaimResult;
  token: string;
  /** `performance.now()` when the claim was sent. */
  sentAt: number;
}

interface WaitArgs {
  store: Store;
  recordId: string;
  /** 0: answer busy at once. */
  waitMs: number;
  claim: () => Promise<Claimed>;
  /** A claim the caller already sent (at `startedAt`, `performance.now()`): the loop starts with its answer. */
  first?: Claimed;
  startedAt?: number;
  /** Throws for a record the caller must not use; true when it is a completed outcome. */
  accept: (record: StoreRecord) => boolean;
  /** Called when this caller starts waiting, with the holder's lease time left. */
  onWait: (leaseLeftMs: number) => void;
  /** Called with the holder's lease time left every time a claim finds the record held. */
  onLease?: (leaseLeftMs: number) => void;
}

/** Claims until the key is ours, completed, or the wait is over. */
export async function waitForTurn(args: WaitArgs): Promise<Turn> {
  // monotonic: a wall clock stepped back must not stretch the wait past waitMs
  const deadline = (args.startedAt ?? performance.now()) + args.waitMs;
  let delay = WAIT_FIRST_MS;
  let wake: Wake | undefined;
  let first = args.first;
  try {
    for (;;) {
      const { result, token, sentAt } = first ?? (await args.claim());
      first = undefined;
      if (result.status === 'acquired') {
        return { kind: 'acquired', token, attempt: result.attempt, takeover: result.takeover, sentAt };
      }
      const { record, now } = result;
      if (args.accept(record)) return { kind: 'completed', record, now };
      const leaseLeft = Math.max(0, record.leaseUntil - now);
      args.onLease?.(leaseLeft);
      const left = deadline - performance.now();
      if (left <= 0) return { kind: 'busy', retryAfterMs: leaseLeft, timedOut: wake !== undefined };
      if (!wake) {
        args.onWait(leaseLeft);
        wake = subscribe(args.store, args.recordId);
      }
      const jittered = delay * (0.8 + Math.random() * 0.4);
      await wake.sleep(Math.max(1, Math.min(jittered, leaseLeft + 1, left)));
      delay = Math.min(delay * 2, WAIT_MAX_MS);
    }
  } finally {
    wake?.close();
  }
}

interface Wake {
  /** Sleeps `ms`, or less when the store signals a change to the record. */
  sleep(ms: number): Promise<void>;
  close(): void;
}

/** One subscription for the whole wait; a signal that arrives between sleeps is not lost. */
function subscribe(store: Store, id: string): Wake {
  let signalled = false;
  let resolveSleep: (() => void) | undefined;
  let unsubscribe: (() => void) | undefined;
  try {
    unsubscribe = store.subscribe?.(id, () => {
      signalled = true;
      resolveSleep?.();
    });
  } catch {
    // subscription is an optimisation; polling still wakes us
  }
  return {
    sleep(ms) {
      if (signalled) {
        signalled = false;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => {
        const timer = setTimeout(done, ms);
        function done() {
          clearTimeout(timer);
          resolveSleep = undefined;
          signalled = false;
          resolve();
        }
        resolveSleep = done;
      });
    },
    close() {
      unsubscribe?.();
    },
  };
}

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
  | { kind: 'acquired'; token: string; attempt: number; takeover: boolean }
  | { kind: 'completed'; record: StoreRecord }
  | { kind: 'busy'; retryAfterMs: number; timedOut: boolean };

interface WaitArgs {
  store: Store;
  recordId: string;
  /** 0: answer busy at once. */
  waitMs: number;
  claim: () => Promise<{ result: ClaimResult; token: string }>;
  /** Throws for a record the caller must not use; true when it is a completed outcome. */
  accept: (record: StoreRecord) => boolean;
  onWait: () => void;
}

/** Claims until the key is ours, completed, or the wait is over. */
export async function waitForTurn(args: WaitArgs): Promise<Turn> {
  const deadline = Date.now() + args.waitMs;
  let delay = WAIT_FIRST_MS;
  let waited = false;
  for (;;) {
    const { result, token } = await args.claim();
    if (result.status === 'acquired') {
      return { kind: 'acquired', token, attempt: result.attempt, takeover: result.takeover };
    }
    const { record, now } = result;
    if (args.accept(record)) return { kind: 'completed', record };
    const leaseLeft = Math.max(0, record.leaseUntil - now);
    const left = deadline - Date.now();
    if (left <= 0) return { kind: 'busy', retryAfterMs: leaseLeft, timedOut: waited };
    if (!waited) args.onWait();
    waited = true;
    const jittered = delay * (0.8 + Math.random() * 0.4);
    await sleep(Math.max(1, Math.min(jittered, leaseLeft + 1, left)), args.store, args.recordId);
    delay = Math.min(delay * 2, WAIT_MAX_MS);
  }
}

function sleep(ms: number, store: Store, id: string): Promise<void> {
  return new Promise((resolve) => {
    let unsubscribe: (() => void) | undefined;
    const done = () => {
      clearTimeout(timer);
      unsubscribe?.();
      resolve();
    };
    const timer = setTimeout(done, ms);
    try {
      unsubscribe = store.subscribe?.(id, done);
    } catch {
      // subscription is an optimisation; polling still wakes us
    }
  });
}

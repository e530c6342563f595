/**
 * The heartbeat that keeps a holder's lease alive while its action runs.
 *
 * ```
 * claim sent ─┬─ renew ─── renew ─── renew ──── complete(token)
 *             │<─ lease/3 ─>
 *             └ lease: leaseUntil = store now + lease, pushed forward by every renew
 * renew answers "lost" (another holder took over) ─▶ signal aborts with LeaseLostError
 * renew fails or hangs past the last known lease end ─▶ signal aborts too
 * ```
 *
 * The local lease end is measured from when the claim (or renew) was *sent*: the store set
 * leaseUntil no earlier than that, so the real lease never ends before the local estimate.
 *
 * @module
 */
import { withDeadline } from './deadline.ts';
import { LeaseLostError } from './errors.ts';
import type { Store } from './store.ts';

export interface Heartbeat {
  /** Stops renewing; safe to call twice. */
  stop(): void;
}

interface HeartbeatArgs {
  store: Store;
  id: string;
  token: string;
  leaseMs: number;
  intervalMs: number;
  /** The local lease end of the claim: claim sent + leaseMs. */
  leaseEnd: number;
  controller: AbortController;
  onRenew: (localLeaseEnd: number) => void;
  onError: (error: unknown) => void;
}

const TIMED_OUT = new Error('renew timed out');

/**
 * Renews the lease every `intervalMs` until stopped, and aborts `controller` with a
 * `LeaseLostError` as soon as the lease is lost or can no longer be known to hold.
 */
export function startHeartbeat(a: HeartbeatArgs): Heartbeat {
  let leaseEnd = a.leaseEnd;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const lose = (message: string) => {
    stopped = true;
    if (!a.controller.signal.aborted) a.controller.abort(new LeaseLostError(message));
  };
  const beat = async () => {
    if (stopped) return;
    const sentAt = Date.now();
    try {
      // A renew that hangs past the lease is as good as lost: never wait for it beyond that.
      const until = await withDeadline(
        a.store.renew(a.id, a.token, a.leaseMs),
        leaseEnd - sentAt,
        () => TIMED_OUT,
      );
      if (stopped) return;
      if (until === undefined) return lose('the lease on this key was lost to another holder');
      leaseEnd = sentAt + a.leaseMs;
      a.onRenew(leaseEnd);
    } catch (error) {
      if (stopped) return;
      if (error === TIMED_OUT) return lose('the store did not confirm the lease before it ran out');
      a.onError(error);
      if (Date.now() >= leaseEnd) return lose('the lease could not be renewed before it ran out');
    }
    schedule(Math.min(a.intervalMs, Math.max(10, leaseEnd - Date.now())));
  };
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(beat, ms);
    timer.unref();
  };
  schedule(Math.min(a.intervalMs, Math.max(10, leaseEnd - Date.now())));

  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

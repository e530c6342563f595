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
 * It is kept on the monotonic clock (`performance.now()`), so a wall clock stepped back or
 * forward while the action runs neither delays the abort past the real lease end nor aborts
 * a lease the store keeps renewing.
 *
 * @module
 */
import { withDeadline } from './deadline.ts';
import { LeaseLostError, type LeaseLostReason } from './errors.ts';
import type { Store } from './store.ts';

export interface Heartbeat {
  /**
   * The action is done: keep renewing while its outcome is stored, but never abort the
   * signal any more (a renew that lands after the complete finds the record completed).
   */
  settle(): void;
  /** Stops renewing; safe to call twice. */
  stop(): void;
}

interface HeartbeatArgs {
  store: Store;
  id: string;
  token: string;
  leaseMs: number;
  intervalMs: number;
  /** The local lease end of the claim: claim sent + leaseMs, on the `performance.now()` clock. */
  leaseEnd: number;
  controller: AbortController;
  /** Called after each renewal with the new local lease end, epoch ms. */
  onRenew: (localLeaseEnd: number) => void;
  onError: (error: unknown) => void;
}

const TIMED_OUT = new Error('renew timed out');
/**
 * After a refused renew the lease is already gone (another holder may be running): the read
 * that names the reason gets at most this long before the signal aborts as 'unconfirmed'.
 */
const REASON_WAIT_MS = 1000;

/**
 * Renews the lease every `intervalMs` until stopped, and aborts `controller` with a
 * `LeaseLostError` as soon as the lease is lost or can no longer be known to hold.
 */
export function startHeartbeat(a: HeartbeatArgs): Heartbeat {
  // monotonic time throughout: the wall clock may be stepped while the action runs
  let leaseEnd = a.leaseEnd;
  let stopped = false;
  let settled = false;
  let timer: NodeJS.Timeout | undefined;

  const lose = (message: string, reason: LeaseLostReason) => {
    stopped = true;
    if (!settled && !a.controller.signal.aborted) {
      a.controller.abort(new LeaseLostError(message, undefined, reason));
    }
  };
  const beat = async () => {
    if (stopped) return;
    const sentAt = performance.now();
    try {
      // A renew that hangs past the lease is as good as lost: never wait for it beyond that.
      const until = await withDeadline(
        a.store.renew(a.id, a.token, a.leaseMs),
        leaseEnd - sentAt,
        () => TIMED_OUT,
      );
      if (stopped) return;
      if (until === undefined) {
        stopped = true;
        const reason = await lostBecause(a.store, a.id, a.token, Math.min(a.leaseMs, REASON_WAIT_MS));
        return lose(LOST_MESSAGE[reason], reason);
      }
      leaseEnd = sentAt + a.leaseMs;
      a.onRenew(Date.now() + (leaseEnd - performance.now()));
    } catch (error) {
      if (stopped) return;
      if (error === TIMED_OUT) {
        return lose('the store did not confirm the lease before it ran out', 'unconfirmed');
      }
      a.onError(error);
      if (performance.now() >= leaseEnd) {
        return lose('the lease could not be renewed before it ran out', 'unconfirmed');
      }
    }
    schedule(Math.min(a.intervalMs, Math.max(10, leaseEnd - performance.now())));
  };
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(beat, ms);
    timer.unref();
  };
  schedule(Math.min(a.intervalMs, Math.max(10, leaseEnd - performance.now())));

  return {
    settle() {
      settled = true;
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

const LOST_MESSAGE: Record<LeaseLostReason, string> = {
  taken_over:
    'the lease on this key was lost: the key was taken over by another holder, which decides its outcome',
  record_lost:
    'the record of this key was lost (the store no longer has it: expired, or the store lost its data): nobody holds the key, and the next call runs the action again',
  unconfirmed: 'the store did not confirm the lease before it ran out',
};

/**
 * Why `token` no longer holds record `id`: one read of the record, within the lease length.
 * Absent: the record was lost; anything else: another holder has (or had) it.
 *
 * @example
 * const reason = await lostBecause(store, recordId, token, 30_000); // 'taken_over' | 'record_lost' | 'unconfirmed'
 */
export async function lostBecause(
  store: Store,
  id: string,
  token: string,
  waitMs: number,
): Promise<LeaseLostReason> {
  try {
    const record = await withDeadline(store.get(id), waitMs, () => TIMED_OUT);
    if (record === undefined) return 'record_lost';
    return record.token === token && record.state === 'in_progress' ? 'unconfirmed' : 'taken_over';
  } catch {
    return 'unconfirmed';
  }
}

/**
 * The `LeaseLostError` for a holder whose `complete` was refused: taken over, or record lost.
 *
 * @example
 * throw leaseLost('taken_over', value)
 */
export function leaseLost(reason: LeaseLostReason, value: unknown): LeaseLostError {
  const message =
    reason === 'record_lost'
      ? 'the record of this key was lost before the outcome was stored (the store no longer has it: expired, or the store lost its data); nothing was stored and nobody holds the key, so the next call runs the action again'
      : reason === 'taken_over'
        ? 'the lease was lost before the outcome was stored: the key was taken over by another holder, which decides its outcome'
        : 'the store refused the outcome and could not say why; nothing was stored';
  return new LeaseLostError(message, value, reason);
}

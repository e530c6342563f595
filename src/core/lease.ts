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
import { createHeartbeatTimer, type HeartbeatTimer, type Pulse } from './heartbeat-timer.ts';
import type { Store } from './store.ts';

export { createHeartbeatTimer, type HeartbeatTimer } from './heartbeat-timer.ts';

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
  /** Aborted with the `LeaseLostError` when the lease is lost (or pass `onLost`). */
  controller?: AbortController;
  /** Called once with the `LeaseLostError` when the lease is lost, unless settled first. */
  onLost?: (error: LeaseLostError) => void;
  /** Called after each renewal with the new local lease end, epoch ms. */
  onRenew: (localLeaseEnd: number) => void;
  onError: (error: unknown) => void;
  /** The timer the beats share (one per idem instance); default: a timer of its own. */
  beats?: HeartbeatTimer;
}

const TIMED_OUT = new Error('renew timed out');
/**
 * After a refused renew the lease is already gone (another holder may be running): the read
 * that names the reason gets at most this long before the signal aborts as 'unconfirmed'.
 */
const REASON_WAIT_MS = 1000;

/**
 * Renews the lease every `intervalMs` until stopped, and aborts `controller` (or calls
 * `onLost`) with a `LeaseLostError` as soon as the lease is lost or can no longer be known to
 * hold.
 *
 * @example
 * const heartbeat = startHeartbeat({ store, id, token, leaseMs, intervalMs: leaseMs / 3,
 *   leaseEnd: sentAt + leaseMs, controller, onRenew: () => {}, onError: () => {} });
 * try { await action(controller.signal) } finally { heartbeat.stop() }
 */
export function startHeartbeat(a: HeartbeatArgs): Heartbeat {
  const hb: HeartbeatState = {
    a,
    beats: a.beats ?? createHeartbeatTimer(),
    dueAt: 0,
    slackMs: a.intervalMs / 4,
    leaseEnd: a.leaseEnd,
    stopped: false,
    settled: false,
    lost: false,
    beat: beatOnce,
    prev: undefined,
    next: undefined,
    settle: settleHeartbeat,
    stop: stopHeartbeat,
  };
  schedule(hb);
  return hb;
}

/** One heartbeat: its pulse in the shared timer and what it knows. Times on `performance.now()`. */
interface HeartbeatState extends Pulse, Heartbeat {
  a: HeartbeatArgs;
  beats: HeartbeatTimer;
  leaseEnd: number;
  stopped: boolean;
  settled: boolean;
  lost: boolean;
}

// Shared functions called as methods (`this` is the heartbeat), so a heartbeat allocates no closures.
function settleHeartbeat(this: HeartbeatState) {
  this.settled = true;
}
function stopHeartbeat(this: HeartbeatState) {
  this.stopped = true;
  this.beats.delete(this);
}
function beatOnce(this: HeartbeatState) {
  void beat(this);
}

function schedule(hb: HeartbeatState) {
  if (hb.stopped) return;
  const now = performance.now();
  hb.dueAt = now + Math.min(hb.a.intervalMs, Math.max(10, hb.leaseEnd - now));
  hb.beats.add(hb);
}

function lose(hb: HeartbeatState, message: string, reason: LeaseLostReason) {
  hb.stopped = true;
  if (hb.settled || hb.lost) return;
  hb.lost = true;
  const error = new LeaseLostError(message, undefined, reason);
  const { controller, onLost } = hb.a;
  if (controller && !controller.signal.aborted) controller.abort(error);
  onLost?.(error);
}

async function beat(hb: HeartbeatState) {
  if (hb.stopped) return;
  const a = hb.a;
  const sentAt = performance.now();
  try {
    // A renew that hangs past the lease is as good as lost: never wait for it beyond that.
    const until = await withDeadline(
      a.store.renew(a.id, a.token, a.leaseMs),
      hb.leaseEnd - sentAt,
      () => TIMED_OUT,
    );
    if (hb.stopped) return;
    if (until === undefined) {
      hb.stopped = true;
      const reason = await lostBecause(a.store, a.id, a.token, Math.min(a.leaseMs, REASON_WAIT_MS));
      return lose(hb, LOST_MESSAGE[reason], reason);
    }
    hb.leaseEnd = sentAt + a.leaseMs;
    a.onRenew(Date.now() + (hb.leaseEnd - performance.now()));
  } catch (error) {
    if (hb.stopped) return;
    if (error === TIMED_OUT) {
      return lose(hb, 'the store did not confirm the lease before it ran out', 'unconfirmed');
    }
    a.onError(error);
    if (performance.now() >= hb.leaseEnd) {
      return lose(hb, 'the lease could not be renewed before it ran out', 'unconfirmed');
    }
  }
  schedule(hb);
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

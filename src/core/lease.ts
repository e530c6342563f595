/**
 * The heartbeat that keeps a holder's lease alive while its action runs.
 *
 * ```
 * claim ─┬─ renew ─── renew ─── renew ──── complete(token)
 *        │<─ lease/3 ─>
 *        └ lease: leaseUntil = store now + lease, pushed forward by every renew
 * renew answers "lost" (another holder took over) ─▶ signal aborts with LeaseLostError
 * renew keeps failing (store down) past the last known leaseUntil ─▶ signal aborts too
 * ```
 *
 * @module
 */
import { LeaseLostError } from './errors.ts';
import type { Store } from './store.ts';

const TIMED_OUT = Symbol('timed out');
const expiry = (ms: number) =>
  new Promise<typeof TIMED_OUT>((resolve) => setTimeout(resolve, Math.max(0, ms), TIMED_OUT).unref());

export interface Heartbeat {
  /** Stops renewing; safe to call twice. */
  stop(): void;
}

/**
 * Renews the lease of (`id`, `token`) every `intervalMs` until stopped, and aborts `controller`
 * with a `LeaseLostError` as soon as the lease is lost or can no longer be known to hold.
 */
export function startHeartbeat(
  store: Store,
  id: string,
  token: string,
  leaseMs: number,
  intervalMs: number,
  controller: AbortController,
  onRenewError: (error: unknown) => void,
): Heartbeat {
  // A conservative local deadline: the lease surely ends by then on the store's clock.
  let localDeadline = Date.now() + leaseMs;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const lose = (message: string) => {
    stopped = true;
    if (!controller.signal.aborted) controller.abort(new LeaseLostError(message));
  };
  const beat = async () => {
    if (stopped) return;
    const sentAt = Date.now();
    try {
      // A renew that hangs past the lease is as good as lost: never wait for it beyond that.
      const until = await Promise.race([store.renew(id, token, leaseMs), expiry(localDeadline - sentAt)]);
      if (stopped) return;
      if (until === TIMED_OUT) return lose('the store did not confirm the lease before it ran out');
      if (until === undefined) return lose('the lease on this key was lost to another holder');
      localDeadline = sentAt + leaseMs;
    } catch (error) {
      if (stopped) return;
      onRenewError(error);
      if (Date.now() >= localDeadline) return lose('the lease could not be renewed before it ran out');
    }
    schedule(Math.min(intervalMs, Math.max(10, localDeadline - Date.now())));
  };
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(beat, ms);
    timer.unref();
  };
  schedule(intervalMs);

  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

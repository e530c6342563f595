/**
 * Undoing claims that failed for the caller but may still land. A claim that timed out (a
 * paused Redis, a slow Postgres) was sent: the store may apply it after the caller got
 * `StoreUnavailableError`. Left alone, that record would block the key for a lease and then
 * be taken over as "may have run" although nothing ran. The engine knows the token it sent,
 * so it releases that token in the background once the store answers again.
 *
 * ```
 * claim(token) ─✗ timeout ─▶ caller gets StoreUnavailableError at once
 *        └ background: release(token, guardMs) at +100 ms, +400, +1 s, +2 s, +4 s, +8 s, +16 s
 *            true  ─▶ the late claim is undone (event 'released'); stop
 *            false ─▶ not landed (yet: a claim may wait behind a lock): try at the next step
 *            error ─▶ the store is still away: try at the next step
 *        after the last step, give up: the key then waits out its lease as before
 * ```
 *
 * A release is fenced by the token, so it can only ever undo this caller's own claim. It is the
 * release the holder would have made (with the call's guard window): a late claim that landed on
 * a released marker leaves a marker again, never deletes it, so another input stays refused.
 *
 * @module
 */
import type { IdemEvent } from './events.ts';
import type { Store } from './store.ts';

/** Delays between release attempts, in ms (about 16 s in all). */
export const UNDO_DELAYS_MS = [100, 300, 600, 1000, 2000, 4000, 8000];

/** The background releaser of one engine. */
export interface LateClaimUndo {
  /**
   * Schedules the release of `token`, which a failed claim on `recordId` sent, with the call's
   * guard window `guardMs` (see `Store.release`). Never blocks.
   */
  undo(recordId: string, token: string, guardMs: number): void;
  /** Cancels every pending release (the engine is closing). */
  cancel(): void;
}

/**
 * Creates the background releaser for `store`.
 *
 * @example
 * const late = createLateClaimUndo(store, emit);
 * try { await store.claim(req) } catch (e) { late.undo(req.id, req.token, 60_000); throw e }
 */
export function createLateClaimUndo(
  store: Store,
  emit: ((event: IdemEvent) => void) | undefined,
): LateClaimUndo {
  const timers = new Set<NodeJS.Timeout>();
  let cancelled = false;

  const after = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timer.unref();
    timers.add(timer);
  };

  return {
    undo(recordId, token, guardMs) {
      const attempt = (step: number) => {
        if (cancelled) return;
        let pending: Promise<boolean>;
        try {
          pending = store.release(recordId, token, guardMs);
        } catch (error) {
          pending = Promise.reject(error);
        }
        pending.then(
          (released) => {
            if (released) emit?.({ type: 'released', recordId });
            else next(step);
          },
          (error: unknown) => {
            emit?.({ type: 'store_error', recordId, error });
            next(step);
          },
        );
      };
      const next = (step: number) => {
        const delay = UNDO_DELAYS_MS[step + 1];
        if (delay !== undefined) after(delay, () => attempt(step + 1));
      };
      after(UNDO_DELAYS_MS[0]!, () => attempt(0));
    },
    cancel() {
      cancelled = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}

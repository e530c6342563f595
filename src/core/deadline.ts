/**
 * One helper for every "answer within N ms" in idem: stores, listeners, heartbeats, waiters.
 *
 * @module
 */

/**
 * Resolves like `promise`, or rejects with `onTimeout()` once `ms` have passed, and always
 * clears its timer. When the promise settles late with a value, `late(value)` receives it, so
 * a connection or a lock obtained after the deadline can be handed back.
 *
 * @example
 * const client = await withDeadline(pool.connect(), 2000, () => new StoreUnavailableError('connect timed out'),
 *   (late) => late.release());
 */
export function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => unknown,
  late?: (value: T) => void,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => {
        timedOut = true;
        reject(onTimeout());
      },
      Math.max(0, ms),
    );
  });
  if (late)
    promise.then(
      (v) => timedOut && late(v),
      () => {},
    );
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

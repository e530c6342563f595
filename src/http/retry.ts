/**
 * The `Retry-After` of a 409: a short estimate of when the running request's answer is likely
 * ready, the same rule for the middleware and the gateway. Internal.
 *
 * @module
 */

/** Estimates when an in-flight request's answer is likely ready, for 409's `Retry-After`. */
export interface RetryEstimator {
  /** Records how long a request held its key (claim to stored outcome). */
  record(ms: number): void;
  /** `Retry-After` (whole seconds) and `retry-after-ms` for a holder whose lease has `leaseLeftMs` left. */
  headers(leaseLeftMs: number): [string, string][];
}

/**
 * A `Retry-After` that is a short estimate, not the remaining lease: the median of the last 32
 * times in progress (capped by the lease left; the lease left when nothing was measured yet),
 * bounded to 1 s … `maxMs`. SDKs honour it (some without a cap), so a long lease must never
 * become a long stall.
 *
 * @example
 * const retry = createRetryEstimator(2000);
 * retry.record(1500);
 * retry.headers(29_000) // [['retry-after', '2'], ['retry-after-ms', '1500']]
 */
export function createRetryEstimator(maxMs: number): RetryEstimator {
  const recent: number[] = [];
  let next = 0;
  return {
    record(ms) {
      if (!(ms >= 0)) return;
      if (recent.length < 32) recent.push(ms);
      else recent[next] = ms;
      next = (next + 1) % 32;
    },
    headers(leaseLeftMs) {
      const sorted = [...recent].sort((a, b) => a - b);
      const median = sorted.length ? (sorted[sorted.length >> 1] as number) : undefined;
      const estimate = median === undefined ? leaseLeftMs : Math.min(median, leaseLeftMs);
      const ms = Math.round(Math.min(maxMs, Math.max(1000, estimate)));
      return [
        ['retry-after', String(Math.ceil(ms / 1000))],
        ['retry-after-ms', String(ms)],
      ];
    },
  };
}

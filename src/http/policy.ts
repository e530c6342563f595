/**
 * What happens to a response: stored (every retry with the key gets it back) or released
 * (the key is free again and a retry runs the handler). The principle: store anything that
 * may have had an effect; release only when the handler provably did not act or the failure
 * is transient.
 *
 * | status | default | why |
 * |---|---|---|
 * | 2xx, 3xx | store | definitive |
 * | 4xx except below | store | definitive for these parameters (the draft: "success or an error") |
 * | 401, 403, 408, 409, 425, 429 | release | rejected before execution (auth, rate limit, locks) |
 * | 503, 529 | release | overload: not executed |
 * | 500, 502, 504 and other 5xx | store | indeterminate: it may have had effects; replayed with `x-should-retry: false` |
 *
 * @module
 */

/** `'store'` keeps the response for replays; `'release'` frees the key. */
export type OutcomeDecision = 'store' | 'release';

/** Decides, from the response status, whether to store or release. */
export type OutcomePolicy = (status: number) => OutcomeDecision;

const RELEASED = new Set([401, 403, 408, 409, 425, 429, 503, 529]);

/**
 * The default {@link OutcomePolicy}: release 401/403/408/409/425/429/503/529, store the rest.
 *
 * @example
 * // release 500s too, for a handler known to be side-effect free on failure
 * idempotency({ idem, outcomePolicy: (s) => (s === 500 ? 'release' : defaultOutcomePolicy(s)) })
 */
export const defaultOutcomePolicy: OutcomePolicy = (status) => (RELEASED.has(status) ? 'release' : 'store');

/**
 * The retry policy of `idem/fetch`: which outcomes are worth another attempt with the same
 * key, how long to wait, and how servers steer that (`Retry-After`, `retry-after-ms`,
 * `x-should-retry`).
 *
 * @module
 */

/**
 * Statuses retried by default: transient, or in progress elsewhere.
 *
 * @example
 * RETRYABLE_STATUSES.has(429) // true
 */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 409, 425, 429, 500, 502, 503, 504, 529]);

/**
 * Statuses never retried, whatever the server hints: the request itself is wrong for this key.
 *
 * @example
 * NEVER_RETRIED_STATUSES.has(422) // true
 */
export const NEVER_RETRIED_STATUSES: ReadonlySet<number> = new Set([400, 422]);

/**
 * Whether a response is worth another attempt with the same key:
 * - never 400 or 422 (a malformed key or a reused key with another payload will fail again);
 * - `x-should-retry: false` / `true` decides next;
 * - a 409 only when it says the first request is still in progress (a `Retry-After`, idem's
 *   `conflict` problem or Stripe's `idempotency_key_in_use`), not a business conflict;
 * - otherwise 408, 425, 429, 500, 502, 503, 504, 529.
 *
 * @example
 * if (await shouldRetry(res)) await sleep(retryDelay(res, attempt));
 */
export async function shouldRetry(response: Response): Promise<boolean> {
  if (NEVER_RETRIED_STATUSES.has(response.status)) return false;
  const hint = response.headers.get('x-should-retry')?.trim().toLowerCase();
  if (hint === 'false') return false;
  if (hint === 'true') return true;
  if (response.status === 409) return isInProgressConflict(response);
  return RETRYABLE_STATUSES.has(response.status);
}

async function isInProgressConflict(response: Response): Promise<boolean> {
  if (response.headers.has('retry-after') || response.headers.has('retry-after-ms')) return true;
  if (!/json/i.test(response.headers.get('content-type') ?? '')) return false;
  try {
    const text = await response.clone().text();
    return /idempotency_key_in_use|\/problems\/conflict"/.test(text.slice(0, 65_536));
  } catch {
    return false;
  }
}

/**
 * The delay the server asked for, in ms: `retry-after-ms`, else `Retry-After` as seconds or
 * an HTTP date. Undefined when absent, unparsable, negative, or over `maxMs` (then the client's
 * own backoff applies, as the OpenAI and Anthropic SDKs do).
 *
 * @example
 * serverDelayMs(new Headers({ 'retry-after': '2' }), 60_000) // 2000
 */
export function serverDelayMs(headers: Headers, maxMs: number, now = Date.now()): number | undefined {
  const inRange = (ms: number) => (Number.isFinite(ms) && ms >= 0 && ms <= maxMs ? ms : undefined);
  const ms = headers.get('retry-after-ms');
  if (ms !== null && ms.trim() !== '') {
    const parsed = inRange(Number(ms));
    if (parsed !== undefined) return parsed;
  }
  const value = headers.get('retry-after')?.trim();
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return inRange(Number(value) * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : inRange(Math.max(0, date - now));
}

/**
 * Exponential backoff with full jitter: a uniform delay in [0, min(max, base · 2^(retry-1))].
 *
 * @example
 * backoffMs(3, 500, 8000) // somewhere in [0, 2000]
 */
export function backoffMs(
  retry: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * ceiling);
}

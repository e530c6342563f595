/**
 * The caller's side of idempotency: a `fetch` that sends one `Idempotency-Key` per logical
 * request and keeps it across every retry, so a server that honours the key runs the request
 * at most once however often the network fails.
 *
 * Retries: network errors (no response), 408, 409 while the first attempt is in progress,
 * 425, 429, 500, 502, 503, 504, 529; never 400 or 422. `x-should-retry: true|false` overrides.
 * Waits follow `Retry-After` / `retry-after-ms` (up to 60 s), else exponential backoff with
 * full jitter. An overall `timeout` bounds the whole thing, waits included.
 *
 * @module
 */
import { type Duration, toMs } from '../core/duration.ts';
import { InvalidOptionError } from '../core/errors.ts';
import { backoffMs, serverDelayMs, shouldRetry } from './retry.ts';

export {
  backoffMs,
  NEVER_RETRIED_STATUSES,
  RETRYABLE_STATUSES,
  serverDelayMs,
  shouldRetry,
} from './retry.ts';

/** Options of {@link idempotentFetch} and {@link createIdempotentFetch}. */
export interface IdempotentFetchOptions {
  /** The key; default a random UUID per call. An `Idempotency-Key` already in `init.headers` wins. */
  key?: string;
  /** Default `'Idempotency-Key'`. */
  header?: string;
  /** `'bare'` (default, what most APIs expect) or `'sf-string'` (quoted, as the IETF draft writes it). */
  keyFormat?: 'bare' | 'sf-string';
  /** Attempts in total, the first included. Default 3. */
  maxAttempts?: number;
  /** First backoff ceiling. Default `'500ms'`. */
  baseDelay?: Duration;
  /** Largest backoff ceiling. Default `'8s'`. */
  maxDelay?: Duration;
  /** Largest server-requested wait honoured (`Retry-After`). Default `'60s'`. */
  maxRetryAfter?: Duration;
  /** Deadline for everything, waits included. Default none. */
  timeout?: Duration;
  /** Deadline per attempt; a timed-out attempt is retried. Default none. */
  attemptTimeout?: Duration;
  /** Called before each retry. */
  onRetry?: (event: RetryEvent) => void;
  /** The `fetch` to call. Default `globalThis.fetch`. */
  fetch?: (request: Request) => Promise<Response>;
  /** Source of randomness for jitter, in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/** What {@link IdempotentFetchOptions.onRetry} receives. */
export interface RetryEvent {
  key: string;
  /** The attempt about to start (2 for the first retry). */
  attempt: number;
  delayMs: number;
  /** The status that caused the retry, or the network error. */
  cause: { status: number } | { error: unknown };
}

/** A `Response` that also tells which key was sent, how many attempts it took and whether it was replayed. */
export interface IdempotentResponse extends Response {
  readonly idempotencyKey: string;
  readonly attempts: number;
  /** The server answered `Idempotent-Replayed: true`: a stored result, not a new execution. */
  readonly replayed: boolean;
}

/**
 * No response could be obtained: every attempt failed before a response, or the deadline
 * passed. `key` is the key that was sent: retry later with it to stay idempotent.
 *
 * @example
 * catch (e) { if (e instanceof IdempotentFetchError) queueForLater(url, body, e.key) }
 */
export class IdempotentFetchError extends Error {
  override name = 'IdempotentFetchError';
  readonly key: string;
  readonly attempts: number;
  constructor(message: string, key: string, attempts: number, cause: unknown) {
    super(message, { cause });
    this.key = key;
    this.attempts = attempts;
  }
}

type FetchInput = string | URL | Request;

/**
 * A `fetch` with defaults bound, for a client that always talks to idempotent endpoints.
 *
 * @example
 * import { createIdempotentFetch } from 'idem/fetch';
 * const post = createIdempotentFetch({ maxAttempts: 5, timeout: '30s' });
 * const res = await post('https://api.example/payments', { method: 'POST', body: JSON.stringify(p) });
 * console.log(res.status, res.idempotencyKey, res.attempts, res.replayed);
 */
export function createIdempotentFetch(defaults: IdempotentFetchOptions = {}) {
  return (input: FetchInput, init?: RequestInit, options?: IdempotentFetchOptions) =>
    idempotentFetch(input, init, { ...defaults, ...options });
}

/**
 * `fetch` with one `Idempotency-Key` for the logical request, reused on every retry.
 *
 * @example
 * import { idempotentFetch } from 'idem/fetch';
 * const res = await idempotentFetch('https://api.example/orders', {
 *   method: 'POST',
 *   headers: { 'content-type': 'application/json' },
 *   body: JSON.stringify(order),
 * }, { key: `order-${order.id}`, timeout: '20s' });
 */
export async function idempotentFetch(
  input: FetchInput,
  init?: RequestInit,
  options: IdempotentFetchOptions = {},
): Promise<IdempotentResponse> {
  const o = resolve(options);
  const template = new Request(input, init);
  const existing = template.headers.get(o.header);
  const key = existing ?? options.key ?? crypto.randomUUID();
  if (existing === null) template.headers.set(o.header, o.quoted ? sfString(key) : key);

  const deadlineAt = o.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + o.timeoutMs;
  const deadline = o.timeoutMs === undefined ? undefined : AbortSignal.timeout(o.timeoutMs);
  const outer = [template.signal, ...(deadline ? [deadline] : [])];
  const stopped = () => outer.find((s) => s.aborted);

  for (let attempt = 1; ; attempt++) {
    const signals = o.attemptMs === undefined ? outer : [...outer, AbortSignal.timeout(o.attemptMs)];
    let response: Response;
    try {
      response = await o.fetch(new Request(template.clone(), { signal: AbortSignal.any(signals) }));
    } catch (error) {
      const stop = stopped();
      if (stop === template.signal) throw stop.reason;
      if (stop || attempt >= o.maxAttempts) {
        const why = stop ? 'the deadline passed' : `${attempt} attempts failed`;
        throw new IdempotentFetchError(`no response: ${why}`, key, attempt, stop ? stop.reason : error);
      }
      const delayMs = backoffMs(attempt, o.baseMs, o.maxDelayMs, o.random);
      o.onRetry?.({ key, attempt: attempt + 1, delayMs, cause: { error } });
      await sleep(delayMs, outer, key, attempt);
      continue;
    }
    if (attempt >= o.maxAttempts || !(await shouldRetry(response))) return mark(response, key, attempt);
    const delayMs =
      serverDelayMs(response.headers, o.maxRetryAfterMs) ??
      backoffMs(attempt, o.baseMs, o.maxDelayMs, o.random);
    if (Date.now() + delayMs >= deadlineAt) return mark(response, key, attempt); // no time to wait
    await response.body?.cancel().catch(() => {});
    o.onRetry?.({ key, attempt: attempt + 1, delayMs, cause: { status: response.status } });
    await sleep(delayMs, outer, key, attempt);
  }
}

// --- Internal helpers ---

function resolve(o: IdempotentFetchOptions) {
  const maxAttempts = o.maxAttempts ?? 3;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new InvalidOptionError('maxAttempts must be a whole number ≥ 1');
  }
  if (o.keyFormat !== undefined && o.keyFormat !== 'bare' && o.keyFormat !== 'sf-string') {
    throw new InvalidOptionError(`keyFormat must be 'bare' or 'sf-string'`);
  }
  const fetchFn = o.fetch ?? ((request: Request) => globalThis.fetch(request));
  return {
    maxAttempts,
    header: o.header ?? 'Idempotency-Key',
    quoted: o.keyFormat === 'sf-string',
    baseMs: toMs(o.baseDelay ?? '500ms', 'baseDelay'),
    maxDelayMs: toMs(o.maxDelay ?? '8s', 'maxDelay'),
    maxRetryAfterMs: toMs(o.maxRetryAfter ?? '60s', 'maxRetryAfter'),
    timeoutMs: o.timeout === undefined ? undefined : toMs(o.timeout, 'timeout'),
    attemptMs: o.attemptTimeout === undefined ? undefined : toMs(o.attemptTimeout, 'attemptTimeout'),
    onRetry: o.onRetry,
    fetch: fetchFn,
    random: o.random ?? Math.random,
  };
}

function sfString(key: string): string {
  return `"${key.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function mark(response: Response, key: string, attempts: number): IdempotentResponse {
  return Object.defineProperties(response, {
    idempotencyKey: { value: key, enumerable: true },
    attempts: { value: attempts, enumerable: true },
    replayed: { value: response.headers.get('idempotent-replayed') === 'true', enumerable: true },
  }) as IdempotentResponse;
}

function sleep(ms: number, signals: AbortSignal[], key: string, attempts: number): Promise<void> {
  return new Promise((done, fail) => {
    const signal = AbortSignal.any(signals);
    if (signal.aborted) return fail(abortError(signal, key, attempts));
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      done();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      fail(abortError(signal, key, attempts));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function abortError(signal: AbortSignal, key: string, attempts: number): unknown {
  const reason = signal.reason as { name?: string } | undefined;
  if (reason?.name === 'TimeoutError') {
    return new IdempotentFetchError('no response: the deadline passed', key, attempts, reason);
  }
  return reason;
}

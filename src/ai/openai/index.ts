/**
 * `idem/openai`: an `openai` client whose billable calls (chat completions, Responses,
 * completions, embeddings, images) run upstream at most once per idempotency key, across SDK
 * retries, app retries, concurrent duplicates and processes sharing a store. Built on the SDK's
 * own extension points: `withOptions({ fetch })` and its `idempotencyHeader`, which makes it mint
 * one key per logical call, reuse it on every retry, and send `{ idempotencyKey }` when given.
 *
 * @module
 */
import {
  FingerprintMismatchError,
  InProgressError,
  InvalidKeyError,
  InvalidOptionError,
  StoreUnavailableError,
} from '../../core/errors.ts';
import { problemResponse } from '../../http/problem.ts';
import { createLlmCall, LLM_OPTIONS, type LlmIdemOptions } from '../call.ts';
import { isIndeterminateOutcomeError } from '../errors.ts';
import { OPENAI } from '../providers.ts';

export { type LlmOutcome, RELEASED_STATUSES, REPLAYED_HEADER } from '../call.ts';
export { IndeterminateOutcomeError, isIndeterminateOutcomeError } from '../errors.ts';
export {
  DEFAULT_PRICES,
  type ModelPrice,
  PRICES_AS_OF,
  type PriceTable,
} from '../prices.ts';
export { createSavings, type Savings, type SavingsReport, savingsReport } from '../savings.ts';
export type { Usage } from '../usage.ts';

/** A `fetch` as the SDK calls it. */
type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** The part of an `openai` client `withIdem` uses (any version with `withOptions`). */
export interface OpenAIClientLike {
  withOptions(options: { fetch?: Fetch }): unknown;
}

/** Options of {@link withIdem}. */
export interface OpenAIIdemOptions extends LlmIdemOptions {
  /** The `fetch` that reaches the API. Default: the client's own `fetch`, else the global one. */
  fetch?: Fetch;
}

/**
 * The header the wrapped client sends its key in (the SDK's `idempotencyKey` option sets it).
 *
 * @example
 * await client.chat.completions.create(body, { headers: { [IDEMPOTENCY_HEADER]: key } });
 */
export const IDEMPOTENCY_HEADER = 'Idempotency-Key';

const BILLABLE = OPENAI.billable;

/**
 * A copy of `client` (same type, same options) whose billable calls are claimed in `idem`'s
 * store before they leave: an SDK retry, an app retry with the same `idempotencyKey`, or a
 * concurrent duplicate gets the first call's answer (`Idempotent-Replayed: true` on the
 * response, read it with `.withResponse()`). A timeout or abort leaves the upstream call
 * running; the retry attaches to it. GET and other endpoints pass through untouched.
 *
 * @example
 * import OpenAI from 'openai';
 * import { createIdem } from 'idem';
 * import { sqliteStore } from 'idem/sqlite';
 * import { withIdem } from 'idem/openai';
 *
 * const idem = createIdem({ store: sqliteStore({ path: '.idem/idem.db' }) });
 * const client = withIdem(new OpenAI(), { idem });
 * const answer = await client.chat.completions.create(
 *   { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] },
 *   { idempotencyKey: idem.key('chat', runId, step) },
 * );
 */
export function withIdem<C extends OpenAIClientLike>(client: C, options: OpenAIIdemOptions): C {
  const callOnce = createLlmCall(OPENAI, options, [...LLM_OPTIONS, 'fetch']);
  if (options.fetch !== undefined && typeof options.fetch !== 'function') {
    throw new InvalidOptionError('withIdem: fetch must be a function');
  }
  const configured = client as unknown as { fetch?: Fetch; idempotencyHeader?: string };
  const base: Fetch = options.fetch ?? configured.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const header = configured.idempotencyHeader ?? IDEMPOTENCY_HEADER;

  const idemFetch: Fetch = async (input, init = {}) => {
    const url = input instanceof Request ? input.url : String(input);
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const headers = new Headers(init.headers);
    const key = headers.get(header);
    if (method !== 'POST' || key === null || !BILLABLE.test(new URL(url).pathname)) return base(input, init);
    const { signal, duplex: _, ...rest } = init as RequestInit & { duplex?: string };
    try {
      return await callOnce({ key, method, url, headers, body: init.body, signal }, (body) =>
        base(url, { ...rest, method, headers, body }),
      );
    } catch (error) {
      return problemFor(error);
    }
  };

  const wrapped = client.withOptions({ fetch: idemFetch }) as C & { idempotencyHeader?: string };
  wrapped.idempotencyHeader = header;
  return wrapped;
}

/**
 * An idem error as the API answer the SDK understands (an `APIError` with this status and a
 * problem+json body), so the SDK neither retries a definitive answer nor wraps it as a
 * connection error. Anything else (an abort, a network error) is rethrown as is.
 */
function problemFor(error: unknown): Response {
  if (error instanceof FingerprintMismatchError) {
    return problemResponse('fingerprint-mismatch', { headers: { 'x-should-retry': 'false' } });
  }
  if (error instanceof InvalidKeyError) {
    return problemResponse('invalid-key', { detail: error.message, headers: { 'x-should-retry': 'false' } });
  }
  if (error instanceof InProgressError) {
    return problemResponse('conflict', {
      headers: { 'retry-after-ms': String(Math.max(100, error.retryAfterMs)), 'x-should-retry': 'true' },
    });
  }
  if (isIndeterminateOutcomeError(error)) {
    return problemResponse('indeterminate-outcome', {
      detail: error.message,
      headers: { 'x-should-retry': 'false', 'x-idem-retry-key': error.retryWithNewKey().idempotencyKey },
    });
  }
  if (error instanceof StoreUnavailableError) {
    return problemResponse('store-unavailable', { headers: { 'x-should-retry': 'true' } });
  }
  throw error;
}

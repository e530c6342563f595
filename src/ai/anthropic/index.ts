/**
 * `idem/anthropic`: an `@anthropic-ai/sdk` client whose billable calls (messages, streamed or
 * not, tool use included; message batches; legacy completions) run upstream at most once per
 * idempotency key, across SDK retries, app retries, concurrent duplicates and processes sharing a
 * store. Built on the SDK's `middleware` option: the middleware gives each logical call one key
 * (the `idempotencyKey` request option, an `Idempotency-Key` header, or one minted per call and
 * kept across the SDK's retries) and sends the request through `next` without the attempt's
 * abort signal, so a timeout leaves the call running and the retry attaches to it.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { createLlmCall, type LlmIdemOptions } from '../call.ts';
import { ANTHROPIC } from '../providers.ts';

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

/** The request a middleware sees (the SDK's `APIRequest`): a `RequestInit` with its `url`. */
interface MiddlewareRequest extends Omit<RequestInit, 'headers'> {
  url: string;
  headers: Headers;
}

/** The SDK's `Middleware` type, structurally (`@anthropic-ai/sdk` ≥ 1.14). */
export type AnthropicMiddleware = (
  request: MiddlewareRequest,
  next: (request: MiddlewareRequest) => Promise<Response>,
  ctx: { readonly options?: object | undefined },
) => Promise<Response>;

/** The part of an `@anthropic-ai/sdk` client `withIdem` uses. */
export interface AnthropicClientLike {
  readonly middleware: ReadonlyArray<unknown>;
  // biome-ignore lint/suspicious/noExplicitAny: the SDK's own Middleware type is accepted as is
  withOptions(options: { middleware?: ReadonlyArray<any> }): unknown;
}

/** Options of {@link withIdem} and {@link idemMiddleware}. */
export type AnthropicIdemOptions = LlmIdemOptions;

/**
 * The header that carries an explicit key (and the minted one, upstream).
 *
 * @example
 * await client.messages.create(body, { headers: { [IDEMPOTENCY_HEADER]: idem.key('chat', runId, step) } });
 */
export const IDEMPOTENCY_HEADER = 'Idempotency-Key';

const BILLABLE = ANTHROPIC.billable;

/**
 * The middleware `withIdem` adds, for a client you build yourself:
 * `new Anthropic({ middleware: [idemMiddleware({ idem })] })`. Put it last among client-level
 * middleware, so the others see replays as ordinary responses.
 *
 * @example
 * import Anthropic from '@anthropic-ai/sdk';
 * const client = new Anthropic({ middleware: [logger, idemMiddleware({ idem })] });
 */
export function idemMiddleware(options: AnthropicIdemOptions): AnthropicMiddleware {
  const callOnce = createLlmCall(ANTHROPIC, options);
  const minted = new WeakMap<object, string>();
  return async function idem(request, next, ctx) {
    const method = (request.method ?? 'GET').toUpperCase();
    const sdkOptions = ctx.options as { idempotencyKey?: string } | undefined;
    if (method !== 'POST' || !sdkOptions || !BILLABLE.test(new URL(request.url).pathname))
      return next(request);
    let key = request.headers.get(IDEMPOTENCY_HEADER) ?? sdkOptions.idempotencyKey ?? minted.get(sdkOptions);
    if (key === undefined) {
      key = `idem-anthropic-${randomUUID()}`;
      minted.set(sdkOptions, key); // the same options object comes back on every SDK retry
    }
    request.headers.set(IDEMPOTENCY_HEADER, key);
    const { signal, ...rest } = request;
    return callOnce(
      { key, method, url: request.url, headers: request.headers, body: request.body, signal },
      (body) => next({ ...rest, body }),
    );
  };
}

/**
 * A copy of `client` (same type, same options) with {@link idemMiddleware} appended: billable
 * calls are claimed in `idem`'s store before they leave, an SDK retry, an app retry with the
 * same key or a concurrent duplicate gets the first call's answer (`Idempotent-Replayed: true`
 * on the response: `.withResponse()`), and a timeout leaves the upstream call running.
 *
 * @example
 * import Anthropic from '@anthropic-ai/sdk';
 * import { createIdem } from 'idem';
 * import { sqliteStore } from 'idem/sqlite';
 * import { withIdem } from 'idem/anthropic';
 *
 * const idem = createIdem({ store: sqliteStore({ path: '.idem/idem.db' }) });
 * const client = withIdem(new Anthropic(), { idem });
 * const message = await client.messages.create(
 *   { model: 'claude-sonnet-4-5', max_tokens: 256, messages: [{ role: 'user', content: 'Hi' }] },
 *   { headers: { 'Idempotency-Key': idem.key('chat', runId, step) } },
 * );
 */
export function withIdem<C extends AnthropicClientLike>(client: C, options: AnthropicIdemOptions): C {
  return client.withOptions({ middleware: [...client.middleware, idemMiddleware(options)] }) as C;
}

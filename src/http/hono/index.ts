/**
 * Idempotency-Key middleware for Hono. Mount it on the routes that create things; it runs the
 * rest of the chain once per key and replays the stored response to every retry.
 *
 * A handler that throws reaches `app.onError` as usual and releases the key, so a retry runs
 * the handler again. The handler reads the key's details from `c.get('idempotency')`.
 *
 * @module
 */
import type { Context, MiddlewareHandler } from 'hono';
import { readLimited } from '../body.ts';
import { createHttpIdempotency, type IdempotencyInfo } from '../core.ts';
import type { IdempotencyOptions } from '../options.ts';

declare module 'hono' {
  interface ContextVariableMap {
    /** Set by idem's `idempotency()` middleware while the handler runs under a key. */
    idempotency?: IdempotencyInfo;
  }
}

export type { IdempotencyInfo, IdempotencyOptions };

/**
 * Hono middleware enforcing the `Idempotency-Key` header (IETF draft) on POST and PATCH.
 *
 * @example
 * import { Hono } from 'hono';
 * import { createIdem } from 'idem';
 * import { sqliteStore } from 'idem/sqlite';
 * import { idempotency } from 'idem/hono';
 *
 * const idem = createIdem({ store: sqliteStore() });
 * const app = new Hono();
 * app.post('/payments', idempotency({ idem, required: true }), async (c) => {
 *   const { downstreamKey } = c.get('idempotency')!;
 *   return c.json(await charge(await c.req.json(), downstreamKey), 201);
 * });
 */
export const idempotency = (options: IdempotencyOptions): MiddlewareHandler => {
  const core = createHttpIdempotency(options);
  return async function idempotency(c, next) {
    // An earlier middleware may have read the body through Hono's cache: read it from there.
    const prepared = await core.prepare(c.req.raw, async (limit) =>
      c.req.raw.bodyUsed ? new Uint8Array(await c.req.arrayBuffer()) : readLimited(c.req.raw.body, limit),
    );
    if (prepared.action === 'pass') return next();
    if (prepared.action === 'respond') {
      answer(c, prepared.response);
      return;
    }
    let thrown: unknown;
    try {
      const response = await core.execute(prepared.plan, async (request, info) => {
        c.req.raw = request;
        c.set('idempotency', info);
        await next();
        if (c.error) {
          thrown = c.error;
          throw c.error;
        }
        return c.res;
      });
      answer(c, response);
    } catch (error) {
      // `app.onError` already answered (c.res); the key is released. Anything else is ours.
      if (thrown === undefined || error !== thrown) throw error;
    }
  };
};

/**
 * Sets the response. Reading `c.res` first materializes the headers earlier middleware set
 * with `c.header()` (CORS, request ids); Hono's setter then merges them into ours, as it does
 * for every response.
 */
function answer(c: Context, response: Response) {
  void c.res;
  c.res = response;
}

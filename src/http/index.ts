/**
 * HTTP idempotency for web-standard `(Request) => Response` handlers (Next.js route handlers,
 * Bun, Deno, Cloudflare Workers), and the framework-free core the Hono, Express and Fastify
 * adapters are built on (the gateway shares its request pipeline). Behaviour:
 * docs/http/behaviour.md.
 *
 * @module
 */
import { createHttpIdempotency, type IdempotencyInfo } from './core.ts';
import type { IdempotencyOptions } from './options.ts';

// What users call: the wrapper, the core for their own integration, the options and the
// outcome policy. The building blocks (key parser, fingerprint, scope, tee, problem writer)
// are internal modules; the adapters import them directly.
export { BodyTooLargeError } from './body.ts';
export {
  type BodyReader,
  createHttpIdempotency,
  type HttpIdempotency,
  type IdempotencyInfo,
  type IdempotencyPlan,
  idempotencyInfo,
  type Next,
  type Prepared,
} from './core.ts';
export type { IdempotencyLogger, IdempotencyOptions } from './options.ts';
export { defaultOutcomePolicy, type OutcomeDecision, type OutcomePolicy } from './policy.ts';
export { PROBLEMS, type ProblemBody, type ProblemType } from './problem.ts';
export type { ScopeFn, ScopeValue } from './scope.ts';
export { credentialScope } from './scope.ts';
export type { IdempotencyEvent, ProblemRenderer } from './types.ts';

/** A web-standard handler; extra arguments (Next.js context, Workers env) pass through. */
export type WebHandler<A extends unknown[] = unknown[]> = (
  request: Request,
  ...rest: A
) => Response | Promise<Response>;

/**
 * Makes a `(Request) => Response` handler idempotent. A handler that throws releases the key
 * and the error is rethrown to the platform (set `handlerErrors: 'problem'` to answer a 500
 * problem instead). Inside the handler, `idempotencyInfo(request)` gives the key, the attempt
 * and a `downstreamKey` for APIs that take idempotency keys.
 *
 * @example
 * // app/api/payments/route.ts (Next.js)
 * import { createIdem } from 'idem';
 * import { sqliteStore } from 'idem/sqlite';
 * import { withIdempotency } from 'idem/http';
 * const idem = createIdem({ store: sqliteStore() });
 * export const POST = withIdempotency(async (req) => {
 *   const payment = await createPayment(await req.json());
 *   return Response.json(payment, { status: 201 });
 * }, { idem, required: true });
 */
export function withIdempotency<A extends unknown[]>(
  handler: WebHandler<A>,
  options: IdempotencyOptions,
): (request: Request, ...rest: A) => Promise<Response> {
  const core = createHttpIdempotency(options);
  return async function idempotent(request: Request, ...rest: A): Promise<Response> {
    return core.handle(request, async (req: Request, _info?: IdempotencyInfo) => handler(req, ...rest));
  };
}

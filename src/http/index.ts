/**
 * HTTP idempotency for web-standard `(Request) => Response` handlers (Next.js route handlers,
 * Bun, Deno, Cloudflare Workers), and the framework-free core the Hono, Express and Fastify
 * adapters and the gateway are built on. Behaviour: docs/http/behaviour.md.
 *
 * @module
 */
import { createHttpIdempotency, type IdempotencyInfo } from './core.ts';
import type { IdempotencyOptions } from './options.ts';

export { BodyTooLargeError, DEFAULT_BODY_LIMIT, isJsonContentType, readLimited } from './body.ts';
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
export {
  DEFAULT_FINGERPRINT_HEADERS,
  type FingerprintOptions,
  type FingerprintRequest,
  type HeaderReader,
  httpFingerprint,
} from './fingerprint.ts';
export { DEFAULT_REPLAY_HEADERS, isNeverReplayed, replayAllowList, storableHeaders } from './headers.ts';
export { type KeyRejection, MAX_HTTP_KEY_LENGTH, type ParsedKey, parseIdempotencyKey } from './key.ts';
export type { IdempotencyLogger, IdempotencyOptions, ResolvedOptions } from './options.ts';
export { type HttpOutcome, NULL_BODY_STATUSES, replayResponse, teeResponse } from './outcome.ts';
export { defaultOutcomePolicy, type OutcomeDecision, type OutcomePolicy } from './policy.ts';
export {
  PROBLEM_BASE,
  PROBLEMS,
  type ProblemBody,
  type ProblemOptions,
  type ProblemType,
  problemBody,
  problemResponse,
} from './problem.ts';
export {
  anonymousScopeWarning,
  CREDENTIAL_HEADERS,
  credentialScope,
  type ScopeFn,
  type ScopeValue,
} from './scope.ts';

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

/**
 * RFC 9457 problem details for every answer idem gives on its own. Each problem has a
 * stable `type` URI under a base (default `https://idem.dev/problems/`), documented in
 * docs/http/behaviour.md.
 *
 * @module
 */

/**
 * Default base of the problem `type` URIs.
 *
 * @example
 * idempotency({ idem, problemBase: 'https://api.example.com/problems/' })
 */
export const PROBLEM_BASE = 'https://idem.dev/problems/';

/**
 * Every problem idem answers with, by slug.
 *
 * @example
 * PROBLEMS.conflict.status // 409
 */
export const PROBLEMS = {
  'missing-key': { status: 400, title: 'Idempotency-Key is missing' },
  'invalid-key': { status: 400, title: 'Idempotency-Key is malformed' },
  'payload-too-large': { status: 413, title: 'Request body is too large to fingerprint' },
  'fingerprint-mismatch': { status: 422, title: 'Idempotency-Key is already used' },
  conflict: { status: 409, title: 'A request is outstanding for this Idempotency-Key' },
  'store-unavailable': { status: 503, title: 'Idempotency store is unavailable' },
  'outcome-too-large': { status: 500, title: 'The outcome was too large to store' },
  'response-incomplete': { status: 500, title: 'The original response failed while it was being sent' },
  'handler-error': { status: 500, title: 'The request handler failed' },
  'invalid-target': { status: 400, title: 'The request target is not a path' },
  'invalid-body': { status: 400, title: 'The request body cannot be fingerprinted' },
  'duplicate-credentials': { status: 400, title: 'A credential header was sent more than once' },
  'missing-credentials': { status: 401, title: 'A keyed request must carry credentials' },
  'internal-error': { status: 500, title: 'idem failed on this request; see its log' },
  // the gateway's upstream leg (src/gateway)
  'upstream-unavailable': { status: 502, title: 'The upstream could not be reached; it was not called' },
  'indeterminate-outcome': {
    status: 502,
    title: 'The upstream may have executed this request, but its response was lost',
  },
  'upstream-timeout': {
    status: 504,
    title: 'The upstream did not answer in time after the request was sent',
  },
} as const;

/** A problem slug: the last segment of its `type` URI. */
export type ProblemType = keyof typeof PROBLEMS;

/** The JSON body of a problem. */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail?: string;
}

/** Options of {@link problemResponse}. */
export interface ProblemOptions {
  /** Human-readable explanation of this occurrence. */
  detail?: string;
  /** Extra response headers (`Retry-After`, `Link`…). */
  headers?: ConstructorParameters<typeof Headers>[0];
  /** Base of the `type` URI. Default {@link PROBLEM_BASE}. */
  base?: string;
}

/**
 * The body of a problem, ready to serialize.
 *
 * @example
 * problemBody('conflict') // { type: 'https://idem.dev/problems/conflict', title: '…', status: 409 }
 */
export function problemBody(type: ProblemType, detail?: string, base = PROBLEM_BASE): ProblemBody {
  const { status, title } = PROBLEMS[type];
  return detail === undefined
    ? { type: base + type, title, status }
    : { type: base + type, title, status, detail };
}

/**
 * A `Response` carrying an `application/problem+json` body, never cached.
 *
 * @example
 * return problemResponse('fingerprint-mismatch', { headers: { 'x-should-retry': 'false' } });
 */
export function problemResponse(type: ProblemType, options: ProblemOptions = {}): Response {
  const body = problemBody(type, options.detail, options.base);
  const headers = new Headers(options.headers);
  headers.set('content-type', 'application/problem+json');
  headers.set('cache-control', 'no-store');
  return new Response(JSON.stringify(body), { status: body.status, headers });
}

/**
 * RFC 9457 problem details for every answer idem gives on its own. Each problem has a
 * stable `type` URI under a base (default `https://idem.dev/problems/`), documented in
 * docs/http/behaviour.md, a stable `code`, a `detail` on every occurrence, and an `error`
 * member in Stripe's shape (`{ type, code, message, doc_url }`) so that clients which only
 * look for `error` (stripe-node, and SDKs generated the same way) raise a typed error
 * instead of taking the problem for a success. RFC 9457 allows extension members and tells
 * consumers to ignore the ones they do not know, so the members are always present
 * (docs/clients.md).
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
 * Stripe's error classes, as `error.type` names them.
 *
 * @example
 * const cls: ErrorClass = PROBLEMS['fingerprint-mismatch'].errorType; // 'idempotency_error'
 */
export type ErrorClass = 'invalid_request_error' | 'idempotency_error' | 'authentication_error' | 'api_error';

/**
 * What one problem is: status, title, stable code, Stripe error class and default detail.
 *
 * @example
 * const spec: ProblemSpec = PROBLEMS.conflict; // { status: 409, code: 'idempotency_key_in_use', … }
 */
export interface ProblemSpec {
  readonly status: number;
  readonly title: string;
  /** Stable, machine-readable; the same in `code` and `error.code`. */
  readonly code: string;
  /** `error.type`: the class stripe-node (and Stripe-shaped SDKs) map to an exception. */
  readonly errorType: ErrorClass;
  /** The `detail` when the caller gives none. */
  readonly detail: string;
}

/**
 * Every problem idem answers with, by slug.
 *
 * @example
 * PROBLEMS.conflict.status // 409
 * PROBLEMS['fingerprint-mismatch'].code // 'idempotency_key_reused'
 */
export const PROBLEMS = {
  'missing-key': {
    status: 400,
    title: 'Idempotency-Key is missing',
    code: 'idempotency_key_missing',
    errorType: 'invalid_request_error',
    detail:
      'this endpoint requires an Idempotency-Key header; send one unique key per operation and reuse it on retries',
  },
  'invalid-key': {
    status: 400,
    title: 'Idempotency-Key is malformed',
    code: 'idempotency_key_invalid',
    errorType: 'invalid_request_error',
    detail: 'send exactly one Idempotency-Key of 1 to 255 printable ASCII characters',
  },
  'payload-too-large': {
    status: 413,
    title: 'Request body is too large to fingerprint',
    code: 'payload_too_large',
    errorType: 'invalid_request_error',
    detail: 'the request body is over the limit; it was not processed',
  },
  'fingerprint-mismatch': {
    status: 422,
    title: 'Idempotency-Key is already used',
    code: 'idempotency_key_reused',
    errorType: 'idempotency_error',
    detail:
      'this key was first used with another request (method, path, headers or body); use a new key for a new request',
  },
  conflict: {
    status: 409,
    title: 'A request is outstanding for this Idempotency-Key',
    code: 'idempotency_key_in_use',
    errorType: 'invalid_request_error',
    detail: 'a request with this key is still running; retry after the indicated delay',
  },
  'store-unavailable': {
    status: 503,
    title: 'Idempotency store is unavailable',
    code: 'idempotency_store_unavailable',
    errorType: 'api_error',
    detail: 'the request was not processed; retry shortly with the same key',
  },
  'outcome-too-large': {
    status: 500,
    title: 'The outcome was too large to store',
    code: 'outcome_too_large',
    errorType: 'api_error',
    detail: 'the request was processed but its response could not be stored; do not retry it blindly',
  },
  'response-incomplete': {
    status: 500,
    title: 'The original response failed while it was being sent',
    code: 'response_incomplete',
    errorType: 'api_error',
    detail: 'the request was processed but its response broke off; its outcome is unknown',
  },
  'handler-error': {
    status: 500,
    title: 'The request handler failed',
    code: 'handler_error',
    errorType: 'api_error',
    detail: 'the handler threw before answering; the key was released, so a retry runs again',
  },
  'invalid-target': {
    status: 400,
    title: 'The request target is not a path',
    code: 'invalid_request_target',
    errorType: 'invalid_request_error',
    detail: 'send the request to a path (origin-form, e.g. /v1/payments); it was not processed',
  },
  'invalid-body': {
    status: 400,
    title: 'The request body cannot be fingerprinted',
    code: 'invalid_body',
    errorType: 'invalid_request_error',
    detail:
      'the body is not well-formed (e.g. a lone surrogate, or JSON nested too deeply); it was not processed',
  },
  'duplicate-credentials': {
    status: 400,
    title: 'A credential header was sent more than once',
    code: 'duplicate_credentials',
    errorType: 'invalid_request_error',
    detail: 'send each credential header (Authorization, X-Api-Key…) once; the request was not processed',
  },
  'missing-credentials': {
    status: 401,
    title: 'A keyed request must carry credentials',
    code: 'missing_credentials',
    errorType: 'authentication_error',
    detail: 'this route scopes keys by caller: send your credentials with the Idempotency-Key',
  },
  'admin-token-required': {
    status: 401,
    title: 'This endpoint needs the admin token',
    code: 'admin_token_required',
    errorType: 'authentication_error',
    detail: 'send Authorization: Bearer <admin token> (adminToken / IDEM_ADMIN_TOKEN)',
  },
  'internal-error': {
    status: 500,
    title: 'idem failed on this request; see its log',
    code: 'internal_error',
    errorType: 'api_error',
    detail: 'an unexpected error in idem; retry with the same key, which is safe whatever happened',
  },
  // the gateway's upstream leg (src/gateway)
  'upstream-unavailable': {
    status: 502,
    title: 'The upstream could not be reached; it was not called',
    code: 'upstream_unavailable',
    errorType: 'api_error',
    detail: 'the request never reached the upstream; the key was released, so a retry is safe',
  },
  'indeterminate-outcome': {
    status: 502,
    title: 'The upstream may have executed this request, but its response was lost',
    code: 'indeterminate_outcome',
    errorType: 'api_error',
    detail: 'the upstream received the request and its answer was lost; this outcome is stored and replayed',
  },
  'upstream-timeout': {
    status: 504,
    title: 'The upstream did not answer in time after the request was sent',
    code: 'upstream_timeout',
    errorType: 'api_error',
    detail:
      'the upstream received the request and did not answer in time; this outcome is stored and replayed',
  },
} as const satisfies Record<string, ProblemSpec>;

/**
 * A problem slug: the last segment of its `type` URI.
 *
 * @example
 * const slug: ProblemType = 'fingerprint-mismatch';
 */
export type ProblemType = keyof typeof PROBLEMS;

/**
 * The Stripe-shaped `error` member of a problem.
 *
 * @example
 * if (body.error?.code === 'idempotency_key_reused') useANewKey();
 */
export interface ProblemError {
  /** Stripe's error class: `idempotency_error` (422), `invalid_request_error` (400, 409, 413), `api_error` (5xx). */
  type: ErrorClass;
  code: string;
  /** `title: detail`, one readable sentence. */
  message: string;
  /** The problem's `type` URI. */
  doc_url: string;
}

/**
 * The JSON body of a problem.
 *
 * @example
 * const body = (await res.json()) as ProblemBody;
 * if (body.code === 'idempotency_key_in_use') retryLater();
 */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  error: ProblemError;
}

/**
 * Options of {@link problemResponse}.
 *
 * @example
 * problemResponse('conflict', { detail: 'retry in a second', headers: { 'retry-after': '1' } });
 */
export interface ProblemOptions {
  /** Human-readable explanation of this occurrence. Default: the problem's own. */
  detail?: string;
  /** Extra response headers (`Retry-After`, `Link`…). */
  headers?: ConstructorParameters<typeof Headers>[0];
  /** Base of the `type` URI. Default {@link PROBLEM_BASE}. */
  base?: string;
}

/**
 * The body of a problem, ready to serialize. An empty or missing `detail` gets the
 * problem's default one.
 *
 * @example
 * problemBody('conflict').error // { type: 'invalid_request_error', code: 'idempotency_key_in_use', … }
 */
export function problemBody(type: ProblemType, detail?: string, base = PROBLEM_BASE): ProblemBody {
  const { status, title, code, errorType } = PROBLEMS[type];
  const text = detail || PROBLEMS[type].detail;
  const uri = base + type;
  return {
    type: uri,
    title,
    status,
    detail: text,
    code,
    error: { type: errorType, code, message: `${title}: ${text}`, doc_url: uri },
  };
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

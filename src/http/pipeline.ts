/**
 * The one request pipeline of every HTTP integration: the middleware's web-standard core and
 * the gateway both run a request through these steps; they only supply the I/O (a header
 * reader and a body reader) and render the answers. Every rule of docs/http/behaviour.md that
 * comes before the handler lives here once.
 *
 * ```
 * parseTarget ─▶ 400 invalid-target       '*', authority-form, another scheme, a bad authority
 * prepareKeyed ─▶ pass                    no key and the key is optional
 *              ─▶ refuse 400 / 401 / 413  missing or bad key, credentials, body over the limit
 *              ─▶ execute                 key, scope, fingerprint and body, ready to claim
 * refusalFor(error) ─▶ 422 │ 409 + short Retry-After │ 503 │ 400 │ undefined (not ours)
 * ```
 *
 * Internal: not exported from `idem/http`.
 *
 * @module
 */
import {
  FingerprintMismatchError,
  InProgressError,
  InvalidKeyError,
  isIdemError,
  OutcomeTooLargeError,
  StoreUnavailableError,
} from '../core/errors.ts';
import { BodyTooLargeError } from './body.ts';
import { type FingerprintOptions, httpFingerprint } from './fingerprint.ts';
import { parseIdempotencyKey } from './key.ts';
import type { ProblemType } from './problem.ts';
import {
  ANONYMOUS_SCOPE,
  anonymousScopeWarning,
  CREDENTIAL_HEADERS,
  type CredentialOptions,
  credentialScopeOf,
  type HeaderLines,
  isGlobalScope,
  type ScopeValue,
  scopeParts,
} from './scope.ts';

/** An answer idem gives on its own, before or instead of the handler; each transport renders it. */
export interface Refusal {
  type: ProblemType;
  detail?: string;
  headers: [string, string][];
}

/** A request as any transport sees it, with the target already parsed by {@link parseTarget}. */
export interface IncomingLike {
  method: string;
  /** The path, origin-form. */
  path: string;
  /** The query with its `?`, or `''`. */
  search: string;
  headers: HeaderLines;
  /** Reads the body, throwing `BodyTooLargeError` past `limit` bytes. */
  readBody(limit: number): Promise<Uint8Array>;
}

/** The rules of one route (gateway) or one middleware. */
export interface KeyRules {
  /** The key header, lower-case. */
  header: string;
  required: boolean;
  bodyLimit: number;
  fingerprint: FingerprintOptions;
  /** The `Link` value sent with 400 `missing-key` / `invalid-key`. */
  describedBy: string;
  scope: ScopeRules;
}

/** How the scope is found. */
export interface ScopeRules extends CredentialOptions {
  /** Parts before the caller's scope (the gateway's namespace). */
  prefix?: readonly string[];
  /** The app's own scope function (replaces the credential scope). */
  custom?: () => ScopeValue | Promise<ScopeValue>;
  /** One namespace for everyone. */
  global?: boolean;
  /** A keyed request without credentials gets 401 `missing-credentials` (never `anonymous`). */
  required?: boolean;
  /** Receives warnings (keyed requests in the anonymous or the global scope); called once per message by the caller. */
  warn(message: string): void;
  /** How to tell anonymous callers apart, for the warning. */
  remedy: string;
}

/** What {@link prepareKeyed} decides. */
export type Preparation =
  | { action: 'pass' }
  | { action: 'refuse'; refusal: Refusal }
  | { action: 'execute'; key: string; scope: string[]; fingerprint: string; body: Uint8Array };

/** A parsed request target. */
export type Target = { ok: true; path: string; search: string } | { ok: false; refusal: Refusal };

export const NO_RETRY: [string, string] = ['x-should-retry', 'false'];

/** Visible ASCII without `#` (lenient on purpose: real queries carry `[`, `]`, `|`, `{`…). */
const PATH = /^[\x21-\x22\x24-\x7e]*$/;
const QUERY = PATH;

/** Largest body read and discarded after a 413, so the client gets the answer instead of a reset. */
export const DRAIN_LIMIT = 8 * 1024 * 1024;

/**
 * Parses a request target without ever throwing: origin-form (`/path?query`) as is;
 * absolute-form `http(s)://authority/path` reduced to origin-form (a proxy-form request is
 * then routed like any other); anything else (`*`, `host:port`, `ftp://…`, a bad authority)
 * is a 400 `invalid-target`.
 *
 * @example
 * parseTarget('http://api.example/pay?x=1') // { ok: true, path: '/pay', search: '?x=1' }
 */
export function parseTarget(target: string): Target {
  let t = target;
  if (/^https?:\/\//i.test(t)) {
    let url: URL;
    try {
      url = new URL(t);
    } catch {
      return badTarget('the request target is an absolute URL with an invalid authority');
    }
    t = url.pathname + url.search;
  }
  if (!t.startsWith('/')) {
    return badTarget('the request target must be a path (origin-form) or an http(s) URL');
  }
  const q = t.indexOf('?');
  const path = q < 0 ? t : t.slice(0, q);
  const search = q < 0 ? '' : t.slice(q);
  if (path.startsWith('//')) {
    return badTarget('the path starts with "//", which URL parsers read as a host; send one "/"');
  }
  if (!PATH.test(path) || !QUERY.test(search)) {
    return badTarget('the request target has characters a URL path or query may not contain');
  }
  return { ok: true, path, search };
}

/**
 * Checks the key, the credentials and the body size, reads the body, and computes scope and
 * fingerprint. Any error while fingerprinting (a lone surrogate, JSON nested too deep) is a
 * 400 `invalid-body`, never a 500. Errors of `readBody` other than the limit propagate (the
 * client went away).
 *
 * @example
 * const p = await prepareKeyed(incoming, rules);
 * if (p.action === 'refuse') return render(p.refusal);
 */
export async function prepareKeyed(req: IncomingLike, rules: KeyRules): Promise<Preparation> {
  const lines = req.headers.lines?.(rules.header) ?? [];
  const field = lines.length > 1 ? lines.join(', ') : req.headers.get(rules.header);
  const link: [string, string] = ['link', rules.describedBy];
  if (field === null) {
    if (!rules.required) return { action: 'pass' };
    const detail = `this endpoint requires an ${rules.header} header`;
    return refuse('missing-key', detail, [NO_RETRY, link]);
  }
  const parsed = parseIdempotencyKey(field);
  if (!parsed.ok) return refuse('invalid-key', parsed.detail, [NO_RETRY, link]);

  const scope = await scopeOf(req.headers, rules.scope);
  if ('refusal' in scope) return { action: 'refuse', refusal: scope.refusal };

  const tooLarge = refuse('payload-too-large', `the limit is ${rules.bodyLimit} bytes`, [
    NO_RETRY,
    ['connection', 'close'],
  ]);
  const declared = Number(req.headers.get('content-length') ?? 0);
  if (declared > DRAIN_LIMIT) return tooLarge;
  let body: Uint8Array;
  try {
    body = await req.readBody(rules.bodyLimit);
  } catch (error) {
    if (error instanceof BodyTooLargeError) return tooLarge;
    throw error;
  }
  if (body.byteLength > rules.bodyLimit) return tooLarge;

  let fingerprint: string;
  try {
    const url = new URL(`http://idem.invalid${req.path}${req.search}`);
    fingerprint = httpFingerprint({ method: req.method, url, headers: req.headers, body }, rules.fingerprint);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return refuse('invalid-body', `the request cannot be fingerprinted: ${why}`, [NO_RETRY]);
  }
  return { action: 'execute', key: parsed.key, scope: scope.parts, fingerprint, body };
}

/**
 * The answer for an error of the engine, or undefined when it is not one idem answers itself.
 *
 * @example
 * const refusal = refusalFor(error, retry, link);
 * if (!refusal) throw error;
 */
export function refusalFor(error: unknown, retry: RetryEstimator, describedBy: string): Refusal | undefined {
  if (error instanceof FingerprintMismatchError) {
    const detail = 'this key was first used with another method, path, query, headers or body';
    return { type: 'fingerprint-mismatch', detail, headers: [NO_RETRY] };
  }
  if (error instanceof InProgressError) {
    const detail = 'a request with this key is still running; retry after the indicated delay';
    return { type: 'conflict', detail, headers: retry.headers(error.retryAfterMs) };
  }
  if (error instanceof StoreUnavailableError) {
    return {
      type: 'store-unavailable',
      detail: 'retry shortly, or send the request without an Idempotency-Key',
      headers: [
        ['retry-after', '2'],
        ['retry-after-ms', '2000'],
      ],
    };
  }
  if (error instanceof OutcomeTooLargeError) {
    return {
      type: 'outcome-too-large',
      detail: error.message,
      headers: [['idempotent-replayed', 'true'], NO_RETRY],
    };
  }
  if (error instanceof InvalidKeyError) {
    return { type: 'invalid-key', detail: error.message, headers: [NO_RETRY, ['link', describedBy]] };
  }
  // A typed 400 of the engine about the input (a fingerprint it cannot compute).
  if (isIdemError(error) && error.status === 400) {
    return { type: 'invalid-body', detail: error.message, headers: [NO_RETRY] };
  }
  return undefined;
}

/** Estimates when an in-flight request's answer is likely ready, for 409's `Retry-After`. */
export interface RetryEstimator {
  /** Records how long a request held its key (claim to stored outcome). */
  record(ms: number): void;
  /** `Retry-After` (whole seconds) and `retry-after-ms` for a holder whose lease has `leaseLeftMs` left. */
  headers(leaseLeftMs: number): [string, string][];
}

/**
 * A `Retry-After` that is a short estimate, not the remaining lease: the median of the last 32
 * times in progress (capped by the lease left; the lease left when nothing was measured yet),
 * bounded to 1 s … `maxMs`. SDKs honour it (some without a cap), so a long lease must never
 * become a long stall.
 *
 * @example
 * const retry = createRetryEstimator(2000);
 * retry.record(1500);
 * retry.headers(29_000) // [['retry-after', '2'], ['retry-after-ms', '1500']]
 */
export function createRetryEstimator(maxMs: number): RetryEstimator {
  const recent: number[] = [];
  let next = 0;
  return {
    record(ms) {
      if (!(ms >= 0)) return;
      if (recent.length < 32) recent.push(ms);
      else recent[next] = ms;
      next = (next + 1) % 32;
    },
    headers(leaseLeftMs) {
      const sorted = [...recent].sort((a, b) => a - b);
      const median = sorted.length ? (sorted[sorted.length >> 1] as number) : undefined;
      const estimate = median === undefined ? leaseLeftMs : Math.min(median, leaseLeftMs);
      const ms = Math.round(Math.min(maxMs, Math.max(1000, estimate)));
      return [
        ['retry-after', String(Math.ceil(ms / 1000))],
        ['retry-after-ms', String(ms)],
      ];
    },
  };
}

/**
 * Requests whose target could not be made into a URL (marked by the Node bridge, which then
 * builds the `Request` on a placeholder URL): the core answers their refusal instead.
 */
export const invalidTargets = new WeakMap<Request, Refusal>();

/** Field lines per lower-case name, recorded by the Node bridge (`Headers` joins repeated lines). */
export const headerLines = new WeakMap<Request, Map<string, string[]>>();

// --- Internal helpers ---

const refuse = (type: ProblemType, detail: string, headers: [string, string][]): Preparation => ({
  action: 'refuse',
  refusal: { type, detail, headers },
});

function badTarget(detail: string): Target {
  return {
    ok: false,
    refusal: { type: 'invalid-target', detail, headers: [NO_RETRY, ['connection', 'close']] },
  };
}

async function scopeOf(
  headers: HeaderLines,
  rules: ScopeRules,
): Promise<{ parts: string[] } | { refusal: Refusal }> {
  const prefix = rules.prefix ?? [];
  if (rules.custom) {
    const parts = scopeParts(await rules.custom());
    if (isGlobalScope(parts)) rules.warn(GLOBAL_WARNING);
    return { parts: [...prefix, ...parts] };
  }
  if (rules.global) return { parts: [...prefix] };
  const scope = credentialScopeOf({ headers }, rules);
  if (!scope.ok) {
    const detail = `the ${scope.duplicate} header was sent more than once; send one credential`;
    return { refusal: { type: 'duplicate-credentials', detail, headers: [NO_RETRY] } };
  }
  if (scope.anonymous) {
    if (rules.required) {
      const names = [...(rules.headers ?? []), ...CREDENTIAL_HEADERS].join(', ');
      const detail = `a keyed request must carry credentials (${names}); keys are scoped by caller`;
      return { refusal: { type: 'missing-credentials', detail, headers: [NO_RETRY] } };
    }
    rules.warn(anonymousWarning(rules));
  }
  return { parts: [...prefix, ...(scope.anonymous ? [ANONYMOUS_SCOPE] : scope.parts)] };
}

export const GLOBAL_WARNING =
  "idem: idempotency keys are global (no scope): one caller can replay or block another caller's key. " +
  'Pass scope: (req) => tenantOrUserId instead.';

function anonymousWarning(rules: ScopeRules): string {
  const names = [...new Set([...(rules.headers ?? []), ...CREDENTIAL_HEADERS])];
  return anonymousScopeWarning(names, rules.remedy);
}

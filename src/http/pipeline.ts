/**
 * The one request pipeline of every HTTP integration: the middleware's web-standard core and
 * the gateway both run a request through these steps; they only supply the I/O (a header
 * reader and a body reader) and render the answers. Every rule of docs/http/behaviour.md that
 * comes before the handler lives here once.
 *
 * ```
 * parseTarget (target.ts) ─▶ 400 invalid-target   '*', authority-form, another scheme, '//'
 * prepareKeyed ─▶ pass                    no key and the key is optional
 *              ─▶ refuse 400 / 401 / 413  missing or bad key, credentials, body over the limit
 *              ─▶ execute                 key, scope, fingerprint and body, ready to claim
 * refusalFor(error) ─▶ 422 │ 409 + short Retry-After (retry.ts) │ 503 │ 400 │ undefined (not ours)
 * ```
 *
 * Internal: not exported from `idem/http`.
 *
 * @module
 */
import { createHash } from 'node:crypto';
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
import type { RetryEstimator } from './retry.ts';
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

/** A request as any transport sees it, with the target already parsed by `parseTarget`. */
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
  /** Longest key, in characters. Default 255. */
  maxKeyLength?: number;
  /** The app's own fingerprint of the body (replaces `fingerprint`); what it throws propagates. */
  customFingerprint?: (body: Uint8Array) => string | Promise<string>;
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

export const NO_RETRY: [string, string] = ['x-should-retry', 'false'];

/** Largest body read and discarded after a 413, so the client gets the answer instead of a reset. */
export const DRAIN_LIMIT = 8 * 1024 * 1024;

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
  const parsed = parseIdempotencyKey(field, rules.maxKeyLength);
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

  if (rules.customFingerprint) {
    const fingerprint = await customFingerprintOf(rules.customFingerprint, body);
    return { action: 'execute', key: parsed.key, scope: scope.parts, fingerprint, body };
  }
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

// --- Internal helpers ---

/** The app's fingerprint, hashed (so a long one costs the store nothing); not a string is a TypeError. */
async function customFingerprintOf(
  fn: (body: Uint8Array) => string | Promise<string>,
  body: Uint8Array,
): Promise<string> {
  const value = await fn(body);
  if (typeof value !== 'string')
    throw new TypeError(`the fingerprint option must return a string, got ${typeof value}`);
  return `custom1:${createHash('sha256').update(value).digest('hex')}`;
}

const refuse = (type: ProblemType, detail: string, headers: [string, string][]): Preparation => ({
  action: 'refuse',
  refusal: { type, detail, headers },
});

async function scopeOf(
  headers: HeaderLines,
  rules: ScopeRules,
): Promise<{ parts: string[] } | { refusal: Refusal }> {
  const prefix = rules.prefix ?? [];
  if (rules.custom) {
    const parts = scopeParts(await rules.custom());
    if (!isGlobalScope(parts)) return { parts: [...prefix, ...parts] };
    rules.warn(GLOBAL_WARNING);
    return { parts: [...prefix] }; // every spelling of "global" is one namespace
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

/**
 * Options shared by every HTTP integration (`idempotency()` for Hono, Express and Fastify,
 * `withIdempotency()` and the core), and their validation into one frozen config.
 *
 * @module
 */
import { type Duration, toMs } from '../core/duration.ts';
import { createIdem, type Idem, type InProgressPolicy } from '../core/engine.ts';
import { InvalidOptionError } from '../core/errors.ts';
import { resolveRunOptions } from '../core/options.ts';
import type { Store } from '../core/store.ts';
import { DEFAULT_BODY_LIMIT } from './body.ts';
import { DEFAULT_FINGERPRINT_HEADERS } from './fingerprint.ts';
import { DEFAULT_REPLAY_HEADERS, HOP_BY_HOP, replayAllowList } from './headers.ts';
import { MAX_HTTP_KEY_LENGTH } from './key.ts';
import { checkKnownOptions } from './known.ts';
import { defaultOutcomePolicy, type OutcomePolicy } from './policy.ts';
import { PROBLEM_BASE } from './problem.ts';
import type { ScopeFn } from './scope.ts';
import type { IdempotencyEvent, ProblemRenderer } from './types.ts';

/** Where warnings and late errors (a store write that failed after the response left) go. */
export interface IdempotencyLogger {
  warn(message: string): void;
  error(message: string, error?: unknown): void;
}

/** Options of every HTTP integration. Only `idem` (or `store`) is required. */
export interface IdempotencyOptions {
  /** The engine, from `createIdem()`. Share one across routes. */
  idem?: Idem;
  /** Shorthand: a store to build a private engine over (`ttl`, `lease`… apply to it). */
  store?: Store;
  /** Methods that honour the key. Default `['POST', 'PATCH']`; GET, HEAD and OPTIONS are never allowed. */
  methods?: readonly string[];
  /** Answer 400 `missing-key` when the key is absent. Default false (the request passes through). */
  required?: boolean;
  /** The request header. Default `'Idempotency-Key'`. */
  header?: string;
  /** How long a stored response is replayed. Default: the engine's (`'24h'`). */
  ttl?: Duration;
  /** How long the running request holds the key between heartbeats. Default: the engine's (`'30s'`). */
  lease?: Duration;
  /**
   * A duplicate of a running request: `'wait'` (default) waits for the first request's response
   * and answers with it; `'reject'` answers 409 with a short `Retry-After`.
   */
  onInProgress?: InProgressPolicy;
  /** How long `'wait'` waits before answering 409. Default: the engine's (`'30s'`). */
  waitTimeout?: Duration;
  /** Request headers in the fingerprint. Default `['content-type']`. */
  fingerprintHeaders?: readonly string[];
  /** JSON body fields left out of the fingerprint, as dot paths (`'meta.traceId'`, `'items.*.ts'`). */
  excludeFields?: readonly string[];
  /**
   * The caller's identity, part of the record id. Default: a hash of the request's normalized
   * credentials (`Authorization`, `Proxy-Authorization`, `X-API-Key`, cookies); requests without
   * credentials all share the `anonymous` scope (idem warns once). `'required'`: the default
   * scope, and a keyed request without credentials gets 401 `missing-credentials`.
   */
  scope?: ScopeFn | 'required';
  /** The cookies that identify a caller (session cookies), for the default scope. Default: all cookies, only without other credentials. */
  scopeCookies?: readonly string[];
  /** Use one namespace for every caller (no scope). Logs a warning once. */
  dangerouslyAllowGlobalKeys?: boolean;
  /** Store or release a response, by status. Default {@link defaultOutcomePolicy}. */
  outcomePolicy?: OutcomePolicy;
  /** Response headers replayed in addition to the defaults. */
  replayHeaders?: readonly string[];
  /** Largest request body accepted, in bytes; 413 above. Default 1 MiB. */
  bodyLimit?: number;
  /** Largest response body stored; above it only status and headers are replayed. Default 2 MiB. */
  maxStoredBodyBytes?: number;
  /** Store down: `'closed'` answers 503 (default); `'open'` runs the handler without idempotency. */
  onStoreError?: 'closed' | 'open';
  /** Upper bound of the `Retry-After` sent with 409 (a short estimate, at least 1 s). Between 1s and 60s. Default `'2s'`. */
  maxRetryAfter?: Duration;
  /** Base of the problem `type` URIs. Default `'https://idem.dev/problems/'`. */
  problemBase?: string;
  /** The page describing the key requirement, sent as `Link: <…>; rel="describedby"`. */
  docsUrl?: string;
  /** A handler that throws: `'rethrow'` (default) to the framework, or `'problem'`: answer 500. */
  handlerErrors?: 'rethrow' | 'problem';
  /** Default `console`. */
  logger?: IdempotencyLogger;
  /** Longest key accepted, in characters; longer keys get 400 `invalid-key`. Default 255 (the draft's); at most 1024. */
  maxKeyLength?: number;
  /** The header (or headers) marking a replay. Default `'Idempotent-Replayed'`; `['Idempotent-Replayed', 'Idempotency-Replayed']` sends both spellings. */
  replayHeader?: string | readonly string[];
  /** Headers sent as `false` on stored 5xx answers, their replays and idem's 4xx problems. Default `['x-should-retry']`; add `'stripe-should-retry'` for stripe-node. */
  shouldRetryHeaders?: readonly string[];
  /** Answers true for a request idem leaves alone (passes through untouched, even with a key). */
  skipRequest?: (request: Request) => boolean | Promise<boolean>;
  /** Replaces the default fingerprint (method, path, query, `fingerprintHeaders`, body): the same string means the same request. */
  fingerprint?: (request: Request, body: Uint8Array) => string | Promise<string>;
  /** Told of each keyed request's fate (`miss`, `hit`, `conflict`); errors are logged, never break the request. */
  onEvent?: (event: IdempotencyEvent) => void | Promise<void>;
  /** Renders idem's own answers (400, 401, 409, 413, 422, 503…) in the app's error shape. */
  onError?: ProblemRenderer;
}

/** The validated form of {@link IdempotencyOptions}. */
export interface ResolvedOptions {
  idem: Idem;
  methods: ReadonlySet<string>;
  required: boolean;
  header: string;
  run: { ttl?: Duration; lease?: Duration; onInProgress?: InProgressPolicy; waitTimeout?: Duration };
  fingerprintHeaders: readonly string[];
  excludeFields: readonly string[];
  scope: ScopeFn | undefined;
  scopeRequired: boolean;
  scopeCookies: readonly string[] | undefined;
  globalKeys: boolean;
  policy: OutcomePolicy;
  replayHeaders: ReadonlySet<string>;
  bodyLimit: number;
  maxStoredBodyBytes: number;
  onStoreError: 'closed' | 'open';
  maxRetryAfterMs: number;
  problemBase: string;
  docsUrl: string;
  handlerErrors: 'rethrow' | 'problem';
  logger: IdempotencyLogger;
  maxKeyLength: number;
  /** Lower-cased replay marker headers. */
  replayMarkers: readonly string[];
  /** Lower-cased should-retry headers. */
  shouldRetryHeaders: readonly string[];
  skipRequest: IdempotencyOptions['skipRequest'];
  fingerprint: IdempotencyOptions['fingerprint'];
  onEvent: IdempotencyOptions['onEvent'];
  onError: ProblemRenderer | undefined;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/** Every option name, in the order the docs list them (the type makes the list complete). */
const OPTION_NAMES: Record<keyof IdempotencyOptions, true> = {
  idem: true,
  store: true,
  methods: true,
  required: true,
  header: true,
  ttl: true,
  lease: true,
  onInProgress: true,
  waitTimeout: true,
  fingerprintHeaders: true,
  excludeFields: true,
  scope: true,
  scopeCookies: true,
  dangerouslyAllowGlobalKeys: true,
  outcomePolicy: true,
  replayHeaders: true,
  bodyLimit: true,
  maxStoredBodyBytes: true,
  onStoreError: true,
  maxRetryAfter: true,
  problemBase: true,
  docsUrl: true,
  handlerErrors: true,
  logger: true,
  maxKeyLength: true,
  replayHeader: true,
  shouldRetryHeaders: true,
  skipRequest: true,
  fingerprint: true,
  onEvent: true,
  onError: true,
};

/**
 * The names {@link IdempotencyOptions} knows; any other is refused.
 *
 * @example
 * IDEMPOTENCY_OPTION_NAMES.includes('header') // true
 */
export const IDEMPOTENCY_OPTION_NAMES: readonly string[] = Object.keys(OPTION_NAMES);

/** Validates options once, at setup; throws `InvalidOptionError` naming the bad option. */
export function resolveOptions(options: IdempotencyOptions): ResolvedOptions {
  if (!options || typeof options !== 'object') throw new InvalidOptionError('idempotency() needs options');
  const proto = Object.getPrototypeOf(options);
  if (proto !== Object.prototype && proto !== null && !('idem' in options) && !('store' in options)) {
    // `app.use(idempotency)`: the framework called the factory with its request or context.
    throw new InvalidOptionError(
      'idempotency() takes an options object: use idempotency({ idem }) as the middleware, not idempotency itself',
    );
  }
  checkKnownOptions(options, IDEMPOTENCY_OPTION_NAMES);
  const { idem, store } = options;
  if ((idem === undefined) === (store === undefined)) {
    throw new InvalidOptionError('pass exactly one of { idem: createIdem(…) } or { store }');
  }
  const methods = new Set((options.methods ?? ['POST', 'PATCH']).map((m) => String(m).toUpperCase()));
  for (const m of methods) {
    if (SAFE.has(m)) throw new InvalidOptionError(`${m} is a safe method: keys are ignored on it`);
  }
  const run = pick(options);
  const engine = idem ?? createIdem({ store: store as Store, ...run });
  if (typeof engine.execute !== 'function') throw new InvalidOptionError('idem must come from createIdem()');
  const maxRetryAfterMs = checkMaxRetryAfter(options.maxRetryAfter, 'maxRetryAfter');
  const scopeRequired = options.scope === 'required';
  const problemBase = options.problemBase ?? PROBLEM_BASE;
  return Object.freeze({
    idem: engine,
    methods,
    required: options.required ?? false,
    header: checkHeader(options.header ?? 'Idempotency-Key'),
    run,
    fingerprintHeaders: options.fingerprintHeaders ?? DEFAULT_FINGERPRINT_HEADERS,
    excludeFields: options.excludeFields ?? [],
    scope: scopeRequired ? undefined : checkFn(options.scope as ScopeFn | undefined, 'scope'),
    scopeRequired,
    scopeCookies:
      options.scopeCookies === undefined ? undefined : strings(options.scopeCookies, 'scopeCookies'),
    globalKeys: options.dangerouslyAllowGlobalKeys === true,
    policy: checkFn(options.outcomePolicy, 'outcomePolicy') ?? defaultOutcomePolicy,
    replayHeaders: replayAllowList(options.replayHeaders),
    bodyLimit: checkBytes(options.bodyLimit ?? DEFAULT_BODY_LIMIT, 'bodyLimit'),
    maxStoredBodyBytes: checkBytes(options.maxStoredBodyBytes ?? 2 * 1024 * 1024, 'maxStoredBodyBytes'),
    onStoreError: checkOneOf(options.onStoreError ?? 'closed', ['closed', 'open'], 'onStoreError'),
    maxRetryAfterMs,
    problemBase,
    docsUrl: options.docsUrl ?? `${problemBase}missing-key`,
    handlerErrors: checkOneOf(options.handlerErrors ?? 'rethrow', ['rethrow', 'problem'], 'handlerErrors'),
    logger: options.logger ?? console,
    maxKeyLength: checkKeyLength(options.maxKeyLength, 'maxKeyLength'),
    replayMarkers: headerNames(options.replayHeader ?? 'Idempotent-Replayed', 'replayHeader'),
    shouldRetryHeaders: headerNames(
      options.shouldRetryHeaders ?? ['x-should-retry'],
      'shouldRetryHeaders',
      false,
    ),
    skipRequest: checkFn(options.skipRequest, 'skipRequest'),
    fingerprint: checkFn(options.fingerprint, 'fingerprint'),
    onEvent: checkFn(options.onEvent, 'onEvent'),
    onError: checkFn(options.onError, 'onError'),
  });
}

/**
 * The longest `maxKeyLength` accepted. Keys are hashed into the record id, never stored raw;
 * a key over the engine's 255 characters is passed to it as its SHA-256.
 *
 * @example
 * idempotency({ idem, maxKeyLength: MAX_KEY_LENGTH_BOUND }) // the most a route may allow
 */
export const MAX_KEY_LENGTH_BOUND = 1024;

/**
 * `maxKeyLength`: default 255, a whole number from 1 to {@link MAX_KEY_LENGTH_BOUND}.
 *
 * @example
 * checkKeyLength(2000, 'routes[0].maxKeyLength') // throws InvalidOptionError
 */
export function checkKeyLength(value: unknown, option: string): number {
  if (value === undefined) return MAX_HTTP_KEY_LENGTH;
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > MAX_KEY_LENGTH_BOUND)
    throw new InvalidOptionError(`${option} must be a whole number from 1 to ${MAX_KEY_LENGTH_BOUND}`);
  return value as number;
}

/**
 * Header names, lower-cased, from one name or a list (`single: false` wants a list).
 *
 * @example
 * headerNames(['X-Should-Retry', 'Stripe-Should-Retry'], 'shouldRetryHeaders') // ['x-should-retry', 'stripe-should-retry']
 */
export function headerNames(value: unknown, option: string, single = true): string[] {
  const list = single && typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0 || !list.every((n) => typeof n === 'string' && TOKEN.test(n)))
    throw new InvalidOptionError(
      `${option} must be ${single ? 'a header name or ' : ''}a non-empty list of header names`,
    );
  const names = [...new Set(list.map((n: string) => n.toLowerCase()))];
  const owned = names.find((n) => RESPONSE_OWNED.has(n) || HOP_BY_HOP.has(n));
  if (owned !== undefined)
    throw new InvalidOptionError(
      `${option}: ${owned} is not a marker header name (the response owns it; a marker would overwrite it)`,
    );
  return names;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Headers a response owns: a marker (`true` / `false`) named like one would overwrite it. */
const RESPONSE_OWNED: ReadonlySet<string> = new Set([
  ...DEFAULT_REPLAY_HEADERS,
  'content-length',
  'set-cookie',
  'date',
  'cache-control',
  'retry-after',
  'retry-after-ms',
  'idempotency-status',
  'idempotency-replay',
]);

function pick(o: IdemRunOptions): ResolvedOptions['run'] {
  const run: ResolvedOptions['run'] = {};
  const ms = resolveRunOptions({ ttl: o.ttl, lease: o.lease, waitTimeout: o.waitTimeout });
  if (ms.ttlMs !== undefined) run.ttl = ms.ttlMs;
  if (ms.leaseMs !== undefined) run.lease = ms.leaseMs;
  if (ms.waitMs !== undefined) run.waitTimeout = ms.waitMs;
  run.onInProgress = checkOneOf<InProgressPolicy>(
    o.onInProgress ?? 'wait',
    ['reject', 'wait'],
    'onInProgress',
  );
  return run;
}

/**
 * `maxRetryAfter` in ms: default 2 s, between 1 s and 60 s (what SDKs honour).
 *
 * @example
 * checkMaxRetryAfter('5m', 'routes[0].maxRetryAfter') // throws InvalidOptionError
 */
export function checkMaxRetryAfter(value: Duration | undefined, option: string): number {
  const ms = toMs(value ?? '2s', option);
  if (ms < 1000 || ms > 60_000) throw new InvalidOptionError(`${option} must be between 1s and 60s`);
  return ms;
}

function strings(value: unknown, option: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
    throw new InvalidOptionError(`${option} must be an array of strings`);
  return value;
}

type IdemRunOptions = Pick<IdempotencyOptions, 'ttl' | 'lease' | 'waitTimeout' | 'onInProgress'>;

function checkHeader(name: string): string {
  if (typeof name !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
    throw new InvalidOptionError(`header must be a header name, got ${JSON.stringify(name)}`);
  }
  return name.toLowerCase();
}

function checkBytes(n: number, option: string): number {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new InvalidOptionError(`${option} must be a whole number of bytes`);
  return n;
}

function checkOneOf<T extends string>(value: T, allowed: readonly T[], option: string): T {
  if (!allowed.includes(value))
    throw new InvalidOptionError(`${option} must be one of ${allowed.join(', ')}`);
  return value;
}

function checkFn<F>(fn: F | undefined, option: string): F | undefined {
  if (fn !== undefined && typeof fn !== 'function')
    throw new InvalidOptionError(`${option} must be a function`);
  return fn;
}

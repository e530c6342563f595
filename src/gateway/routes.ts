/**
 * Routes compiled once at start-up: a path regex, a method set, durations in ms, the outcome
 * policy as a function, the replay allow-list. Matching a request is a loop over a few regexes.
 *
 * @module
 */
import { InvalidOptionError } from '../core/errors.ts';
import { resolveRunOptions } from '../core/options.ts';
import { DEFAULT_BODY_LIMIT } from '../http/body.ts';
import { DEFAULT_FINGERPRINT_HEADERS } from '../http/fingerprint.ts';
import { replayAllowList } from '../http/headers.ts';
import { checkKnownOptions } from '../http/known.ts';
import { checkKeyLength, checkMaxRetryAfter, headerNames } from '../http/options.ts';
import type { ReplayMarks } from '../http/outcome.ts';
import { defaultOutcomePolicy, type OutcomeDecision } from '../http/policy.ts';
import { createRetryEstimator, type RetryEstimator } from '../http/retry.ts';
import type { Concurrency, KeyMode, RoutePolicy } from './config.ts';
import { type PresetName, presetName } from './llm.ts';

/** A route ready for the hot path. */
export interface CompiledRoute {
  name: string;
  path: string;
  pattern: RegExp;
  methods: ReadonlySet<string>;
  key: KeyMode;
  ttlMs: number;
  leaseMs: number;
  waitMs: number;
  concurrency: Concurrency;
  /** `'required'`: a keyed request without credentials gets 401. */
  scope: 'optional' | 'required';
  maxRetryAfterMs: number;
  /** This route's `Retry-After` estimate (recent times in progress). */
  retry: RetryEstimator;
  fingerprint: { headers: readonly string[]; excludeFields: readonly string[] };
  outcome: (status: number) => OutcomeDecision;
  onAbandoned: 'fail' | 'reexecute';
  replayHeaders: ReadonlySet<string>;
  maxRequestBytes: number;
  maxResponseBytes: number;
  maxKeyLength: number;
  /** The replay marker and should-retry header names. */
  marks: ReplayMarks;
  /** The LLM provider rules of this route, if any. */
  llm: PresetName | undefined;
}

const ROUTE_KEYS = new Set([
  'name',
  'path',
  'methods',
  'key',
  'ttl',
  'lease',
  'concurrency',
  'waitTimeout',
  'fingerprintHeaders',
  'excludeFields',
  'outcomes',
  'onAbandoned',
  'replayHeaders',
  'maxRequestBytes',
  'maxResponseBytes',
  'scope',
  'maxRetryAfter',
  'maxKeyLength',
  'replayHeader',
  'shouldRetryHeaders',
  'llm',
]);
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT']);
export const DEFAULT_RESPONSE_LIMIT = 16 * 1024 * 1024;

/**
 * Compiles `routes` over `defaults`; with no routes, one catch-all route `/*`.
 *
 * @example
 * const routes = compileRoutes([{ path: '/payments', concurrency: 'wait' }], { ttl: '24h' });
 * matchRoute(routes, 'POST', '/payments')?.concurrency // 'wait'
 */
export function compileRoutes(
  routes: readonly RoutePolicy[] | undefined,
  defaults: Omit<RoutePolicy, 'path' | 'name'> = {},
): CompiledRoute[] {
  if (routes !== undefined && !Array.isArray(routes)) throw new InvalidOptionError('routes must be an array');
  checkFields(defaults, 'defaults', new Set([...ROUTE_KEYS].filter((k) => k !== 'path' && k !== 'name')));
  compileRoute({ ...defaults, path: '/' }, 'defaults'); // a bad default is named as defaults.<field>
  const list = routes && routes.length > 0 ? routes : [{ path: '/*' }];
  return list.map((r, i) => {
    checkFields(r, `routes[${i}]`, ROUTE_KEYS);
    return compileRoute({ ...defaults, ...r }, `routes[${i}]`);
  });
}

/** The first route whose pattern and methods match, or undefined (pass through). */
export function matchRoute(
  routes: readonly CompiledRoute[],
  method: string,
  path: string,
): CompiledRoute | undefined {
  for (const route of routes) {
    if (route.methods.has(method) && route.pattern.test(path)) return route;
  }
  return undefined;
}

function compileRoute(r: RoutePolicy, where: string): CompiledRoute {
  if (typeof r.path !== 'string' || !r.path.startsWith('/')) {
    throw new InvalidOptionError(`${where}.path must be a string starting with "/"`);
  }
  const methods = (r.methods ?? ['POST', 'PATCH']).map((m) => String(m).toUpperCase());
  for (const m of methods) {
    if (SAFE.has(m)) throw new InvalidOptionError(`${where}.methods: ${m} is never keyed (it is safe)`);
    if (!/^[A-Z]+$/.test(m)) throw new InvalidOptionError(`${where}.methods: "${m}" is not a method`);
  }
  const num = (v: number | undefined, field: string, dflt: number) => {
    if (v === undefined) return dflt;
    if (!Number.isSafeInteger(v) || v <= 0)
      throw new InvalidOptionError(`${where}.${field} must be a positive integer`);
    return v;
  };
  const times = resolveRunOptions(
    { ttl: r.ttl ?? '24h', lease: r.lease ?? '30s', waitTimeout: r.waitTimeout ?? '30s' },
    where,
  );
  const maxRetryAfterMs = checkMaxRetryAfter(r.maxRetryAfter, `${where}.maxRetryAfter`);
  return {
    name: r.name ?? r.path,
    path: r.path,
    pattern: pathPattern(r.path),
    methods: new Set(methods),
    key: oneOf(r.key ?? 'optional', ['optional', 'required', 'ignore'], `${where}.key`),
    ttlMs: times.ttlMs as number,
    leaseMs: times.leaseMs as number,
    waitMs: times.waitMs as number,
    concurrency: oneOf(r.concurrency ?? 'wait', ['reject', 'wait', 'attach'], `${where}.concurrency`),
    scope: oneOf(r.scope ?? 'optional', ['optional', 'required'], `${where}.scope`),
    maxRetryAfterMs,
    retry: createRetryEstimator(maxRetryAfterMs),
    fingerprint: {
      headers: strings(r.fingerprintHeaders ?? DEFAULT_FINGERPRINT_HEADERS, `${where}.fingerprintHeaders`),
      excludeFields: strings(r.excludeFields ?? [], `${where}.excludeFields`, false),
    },
    outcome: outcomePolicy(r.outcomes, `${where}.outcomes`),
    onAbandoned: oneOf(r.onAbandoned ?? 'fail', ['fail', 'reexecute'], `${where}.onAbandoned`),
    replayHeaders: replayAllowList(strings(r.replayHeaders ?? [], `${where}.replayHeaders`)),
    maxRequestBytes: num(r.maxRequestBytes, 'maxRequestBytes', DEFAULT_BODY_LIMIT),
    maxResponseBytes: num(r.maxResponseBytes, 'maxResponseBytes', DEFAULT_RESPONSE_LIMIT),
    maxKeyLength: checkKeyLength(r.maxKeyLength, `${where}.maxKeyLength`),
    marks: {
      replayed: headerNames(r.replayHeader ?? 'Idempotent-Replayed', `${where}.replayHeader`),
      noRetry: headerNames(r.shouldRetryHeaders ?? ['x-should-retry'], `${where}.shouldRetryHeaders`, false),
    },
    llm: r.llm === undefined ? undefined : presetName(r.llm, `${where}.llm`),
  };
}

/** `/orders/:id/refunds` → `^/orders/[^/]+/refunds/?$`; a final `*` matches any rest. */
function pathPattern(path: string): RegExp {
  const segments = path.split('/').slice(1);
  const parts = segments.map((s, i) => {
    if (s === '*' && i === segments.length - 1) return '(?:/.*)?';
    if (s.includes('*')) throw new InvalidOptionError(`path "${path}": "*" may only be the last segment`);
    if (s.startsWith(':')) return '/[^/]+';
    return `/${s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')}`;
  });
  return new RegExp(`^${parts.join('')}${path.endsWith('*') ? '' : '/?'}$`);
}

function outcomePolicy(
  overrides: RoutePolicy['outcomes'],
  where: string,
): (status: number) => OutcomeDecision {
  if (overrides === undefined) return defaultOutcomePolicy;
  if (typeof overrides !== 'object' || overrides === null)
    throw new InvalidOptionError(`${where} must be an object`);
  const exact = new Map<number, OutcomeDecision>();
  const byClass = new Map<number, OutcomeDecision>();
  for (const [k, v] of Object.entries(overrides)) {
    const decision = oneOf(v, ['store', 'release'], `${where}["${k}"]`);
    if (/^[1-5]\d\d$/.test(k)) exact.set(Number(k), decision);
    else if (/^[1-5]xx$/i.test(k)) byClass.set(Number(k[0]), decision);
    else throw new InvalidOptionError(`${where}: "${k}" is neither a status ("500") nor a class ("5xx")`);
  }
  return (status) =>
    exact.get(status) ?? byClass.get(Math.floor(status / 100)) ?? defaultOutcomePolicy(status);
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], where: string): T {
  if (!allowed.includes(value as T)) {
    throw new InvalidOptionError(
      `${where} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}; got ${JSON.stringify(value)}`,
    );
  }
  return value as T;
}

function strings(value: unknown, where: string, lower = true): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new InvalidOptionError(`${where} must be an array of strings`);
  }
  return lower ? value.map((v) => v.toLowerCase()) : value;
}

function checkFields(obj: object, where: string, allowed: ReadonlySet<string>): void {
  if (typeof obj !== 'object' || obj === null) throw new InvalidOptionError(`${where} must be an object`);
  checkKnownOptions(obj, [...allowed], `${where}.`);
}

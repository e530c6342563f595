/**
 * Which response headers are stored and replayed. An allow-list: only the headers below (plus
 * those an app adds) are kept; a deny-list of headers that must never be replayed wins over
 * both, so adding `set-cookie` to the allow-list is a configuration error.
 *
 * @module
 */
import { InvalidOptionError } from '../core/errors.ts';

/**
 * Headers stored with an outcome and replayed by default.
 *
 * @example
 * DEFAULT_REPLAY_HEADERS.includes('location') // true
 */
export const DEFAULT_REPLAY_HEADERS: readonly string[] = [
  'content-type',
  'content-encoding',
  'content-language',
  'location',
  'etag',
  'last-modified',
  'link',
  'x-request-id',
  'request-id',
];

/** Never stored, never replayed: per-response, per-connection or per-moment headers. */
const NEVER = new Set([
  'set-cookie',
  'set-cookie2',
  'date',
  'content-length',
  'retry-after',
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'idempotent-replayed',
  'idempotency-replayed',
  'idempotency-status',
  'x-should-retry',
]);

const NEVER_PATTERNS = [/^x-ratelimit-/, /^ratelimit/, /^x-rate-limit-/, /^[a-z0-9-]+-ratelimit-/];

/**
 * True for a header that must never be replayed (hop-by-hop, cookies, dates, rate limits).
 *
 * @example
 * isNeverReplayed('X-RateLimit-Remaining') // true
 */
export function isNeverReplayed(name: string): boolean {
  const n = name.toLowerCase();
  return NEVER.has(n) || NEVER_PATTERNS.some((p) => p.test(n));
}

/**
 * The lower-cased allow-list: the defaults plus `extra`. Throws `InvalidOptionError` when
 * `extra` names a header that must never be replayed.
 *
 * @example
 * replayAllowList(['x-trace-id']) // Set { 'content-type', …, 'x-trace-id' }
 */
export function replayAllowList(extra: readonly string[] = []): ReadonlySet<string> {
  const out = new Set(DEFAULT_REPLAY_HEADERS);
  for (const name of extra) {
    const n = String(name).toLowerCase();
    if (isNeverReplayed(n)) throw new InvalidOptionError(`the ${n} header is never replayed`);
    out.add(n);
  }
  return out;
}

/**
 * The headers of `headers` worth storing: allow-listed, minus those the `Connection` header
 * names as hop-by-hop. Order is kept; repeated fields stay separate entries.
 *
 * @example
 * storableHeaders(response.headers, replayAllowList()) // [['content-type', 'application/json'], …]
 */
export function storableHeaders(headers: Headers, allow: ReadonlySet<string>): [string, string][] {
  const hopByHop = new Set(
    (headers.get('connection') ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: [string, string][] = [];
  for (const [name, value] of headers) {
    if (allow.has(name) && !hopByHop.has(name) && !isNeverReplayed(name)) out.push([name, value]);
  }
  return out;
}

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

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy `keep-alive`, `proxy-connection` and
 * HTTP/2's `http2-settings`): they describe one connection and never cross a proxy, nor are
 * they stored or replayed.
 *
 * @example
 * HOP_BY_HOP.has('transfer-encoding') // true
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * The header names a `Connection` header lists, lower-cased: hop-by-hop for that message only.
 * Accepts a joined value, the repeated values Node gives, or nothing.
 *
 * @example
 * connectionTokens('keep-alive, X-Trace') // Set { 'keep-alive', 'x-trace' }
 */
export function connectionTokens(value: string | readonly string[] | null | undefined): Set<string> {
  if (value === null || value === undefined) return new Set();
  const joined = typeof value === 'string' ? value : value.join(',');
  return new Set(
    joined
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
}

/** Never stored, never replayed: per-connection, per-response or per-moment headers. */
const NEVER = new Set([
  ...HOP_BY_HOP,
  'set-cookie',
  'set-cookie2',
  'date',
  'content-length',
  'retry-after',
  'idempotent-replayed',
  'idempotency-replayed',
  'idempotency-status',
  'x-should-retry',
]);

const NEVER_PATTERNS = [/^x-ratelimit-/, /^ratelimit/, /^x-rate-limit-/, /^[a-z0-9-]+-ratelimit-/];

/**
 * True for a header that must never be stored or replayed: every {@link HOP_BY_HOP} header,
 * cookies, `date`, `content-length`, `retry-after`, idem's own markers and rate-limit headers.
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
 * True when a response header value is an echo of the derived downstream key (bare or quoted):
 * such a header is rewritten to the client's own key, so the app never sees a key it did not send.
 *
 * @example
 * echoesKey(' "idem_abc" ', 'idem_abc') // true
 */
export function echoesKey(value: string, downstreamKey: string): boolean {
  const v = value.trim();
  return v === downstreamKey || v === `"${downstreamKey}"`;
}

/**
 * The headers of `headers` worth storing: allow-listed, minus those the `Connection` header
 * names as hop-by-hop. Order is kept; repeated fields stay separate entries.
 *
 * @example
 * storableHeaders(response.headers, replayAllowList()) // [['content-type', 'application/json'], …]
 */
export function storableHeaders(headers: Headers, allow: ReadonlySet<string>): [string, string][] {
  const hopByHop = connectionTokens(headers.get('connection'));
  const out: [string, string][] = [];
  for (const [name, value] of headers) {
    if (allow.has(name) && !hopByHop.has(name) && !isNeverReplayed(name)) out.push([name, value]);
  }
  return out;
}

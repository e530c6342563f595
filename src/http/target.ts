/**
 * Request targets: what the pipeline accepts before anything else runs. Internal.
 *
 * @module
 */
import { NO_RETRY, type Refusal } from './pipeline.ts';

/** A parsed request target. */
export type Target = { ok: true; path: string; search: string } | { ok: false; refusal: Refusal };

/** Visible ASCII without `#` (lenient on purpose: real queries carry `[`, `]`, `|`, `{`…). */
const PATH = /^[\x21-\x22\x24-\x7e]*$/;
const QUERY = PATH;
/** A `.` or `..` segment, percent-encoded or not: URL parsers and upstreams resolve them. */
const DOT_SEGMENT = /\/(?:\.|%2e){1,2}(?=\/|$)/i;

/**
 * Parses a request target without ever throwing: origin-form (`/path?query`) as is;
 * absolute-form `http(s)://authority/path` reduced to origin-form (a proxy-form request is
 * then routed like any other); anything else (`*`, `host:port`, `ftp://…`, a bad authority,
 * a `.` or `..` path segment, percent-encoded or not) is a 400 `invalid-target`.
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
  if (DOT_SEGMENT.test(path)) {
    // Routing sees `/files/../pay` under `/files/*`; the upstream may run it as `/pay`.
    return badTarget('the path has a "." or ".." segment; send the resolved path');
  }
  if (!PATH.test(path) || !QUERY.test(search)) {
    return badTarget('the request target has characters a URL path or query may not contain');
  }
  return { ok: true, path, search };
}

/**
 * Requests whose target could not be made into a URL (marked by the Node bridge, which then
 * builds the `Request` on a placeholder URL): the core answers their refusal instead.
 */
export const invalidTargets = new WeakMap<Request, Refusal>();

/** Field lines per lower-case name, recorded by the Node bridge (`Headers` joins repeated lines). */
export const headerLines = new WeakMap<Request, Map<string, string[]>>();

// --- Internal helpers ---

function badTarget(detail: string): Target {
  return {
    ok: false,
    refusal: { type: 'invalid-target', detail, headers: [NO_RETRY, ['connection', 'close']] },
  };
}

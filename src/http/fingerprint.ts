/**
 * The fingerprint of an HTTP request: what a retry must repeat exactly to be a retry.
 *
 * `SHA-256` over, in order: the method, the path (as the URL parser normalizes it), the query
 * with parameters sorted by name (values of one name keep their order), the selected headers
 * (default `content-type`) and the body: for JSON content types, the RFC 8785 canonical JSON
 * of the parsed body minus the excluded fields; otherwise the raw bytes. So `{"a":1,"b":2}`
 * and `{ "b": 2, "a": 1 }` are the same request, and a different path, query, selected header
 * or body is a different one (422 `fingerprint-mismatch`).
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { parseJsonExact } from '../core/json.ts';
import { canonicalJson } from '../core/keys.ts';
import { isJsonContentType } from './body.ts';

/**
 * Headers fingerprinted by default.
 *
 * @example
 * idempotency({ idem, fingerprintHeaders: [...DEFAULT_FINGERPRINT_HEADERS, 'api-version'] })
 */
export const DEFAULT_FINGERPRINT_HEADERS: readonly string[] = ['content-type'];

/**
 * Read access to request headers, by case-insensitive name: a `Headers` object, or a view
 * over another header map (Node's `req.headers`). A repeated header reads as its values
 * joined with `, `, as `Headers#get` answers it.
 *
 * @example
 * const view: HeaderReader = { get: (name) => nodeHeaders[name.toLowerCase()]?.toString() ?? null };
 */
export interface HeaderReader {
  get(name: string): string | null;
}

/** The parts of a request that a fingerprint covers. */
export interface FingerprintRequest {
  method: string;
  url: string | URL;
  /** A `Headers` object or any {@link HeaderReader}. */
  headers: HeaderReader;
  body: Uint8Array;
}

/** Options of {@link httpFingerprint}. */
export interface FingerprintOptions {
  /** Header names whose values are part of the fingerprint. Default `['content-type']`. */
  headers?: readonly string[];
  /** Dot paths left out of a JSON body (`'traceId'`, `'meta.sentAt'`, `'items.*.nonce'`). */
  excludeFields?: readonly string[];
}

const VERSION = 'idem-http-1';
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Computes the fingerprint of a request: a hex SHA-256 prefixed with `http1:`.
 *
 * @example
 * const fp = httpFingerprint(
 *   { method: 'POST', url: 'https://api.example/pay?b=2&a=1', headers, body },
 *   { headers: ['content-type', 'api-version'], excludeFields: ['metadata.traceId'] },
 * );
 */
export function httpFingerprint(request: FingerprintRequest, options: FingerprintOptions = {}): string {
  const url = typeof request.url === 'string' ? new URL(request.url) : request.url;
  const query = new URLSearchParams(url.search);
  query.sort();
  const names = [...new Set((options.headers ?? DEFAULT_FINGERPRINT_HEADERS).map((h) => h.toLowerCase()))];
  names.sort();
  const headers = names.map((n) => [n, request.headers.get(n)?.trim() ?? null]);
  const body = bodyDigest(request.body, request.headers.get('content-type'), options.excludeFields ?? []);
  const material = JSON.stringify([
    VERSION,
    request.method.toUpperCase(),
    url.pathname,
    query.toString(),
    headers,
    body,
  ]);
  return `http1:${createHash('sha256').update(material).digest('hex')}`;
}

function bodyDigest(body: Uint8Array, contentType: string | null, exclude: readonly string[]): string {
  if (isJsonContentType(contentType) && body.byteLength > 0) {
    let parsed: unknown;
    try {
      parsed = parseJsonExact(utf8.decode(body)); // numbers a double cannot hold keep their exact value
    } catch {
      parsed = undefined; // not JSON after all: fall back to the raw bytes
    }
    if (parsed !== undefined) {
      return `json:${createHash('sha256').update(canonicalJson(parsed, exclude)).digest('hex')}`;
    }
  }
  return `raw:${createHash('sha256').update(body).digest('hex')}`;
}

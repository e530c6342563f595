/**
 * What the gateway stores for a response, how it replays one, and the header rules on both
 * legs: hop-by-hop headers never cross the gateway; only allow-listed headers are stored.
 *
 * @module
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Usage } from '../ai/usage.ts';
import { connectionTokens, HOP_BY_HOP, isNeverReplayed } from '../http/headers.ts';
import { DEFAULT_MARKS, markerHeaders, type ReplayMarks } from '../http/outcome.ts';
import { type ProblemType, problemBody } from '../http/problem.ts';

/** A response as stored in the record (serialized by the engine). */
export interface StoredResponse {
  status: number;
  /** Allow-listed headers, in order; a repeated header is several entries. */
  headers: [string, string][];
  /** The body exactly as received: a string when it was valid UTF-8, bytes otherwise; null when omitted. */
  body: string | Uint8Array | null;
  /** The body's size in bytes, also when it was omitted. */
  bytes: number;
  /** True when the body was over `maxResponseBytes` and not stored. */
  omitted?: boolean;
  /** On LLM routes: the model asked for and the usage the provider reported (for savings). */
  llm?: { model?: string; usage?: Usage };
}

/** What the action hands back: the stored response, or one that released the key. */
export interface ForwardResult extends StoredResponse {
  /** The outcome policy released the key: not stored; the response is not a replay. */
  release?: boolean;
}

const REQUEST_DROP = new Set([...HOP_BY_HOP, 'host', 'content-length', 'expect']);
const RESPONSE_DROP_KEYED = new Set([...HOP_BY_HOP, 'content-length']);

/**
 * The request headers sent upstream, as a flat `[name, value, …]` list: the client's, minus
 * hop-by-hop headers, `host`, `content-length` (recomputed), `expect` and the listed `drop`
 * names (the client's key), plus `extra` pairs (`x-forwarded-*`, the derived key).
 */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  drop: ReadonlySet<string>,
  keepLength: boolean,
  extra: readonly string[],
): string[] {
  let conn: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() === 'connection') {
      conn = connectionTokens(rawHeaders[i + 1]);
    }
  }
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const lower = name.toLowerCase();
    if (REQUEST_DROP.has(lower) && !(keepLength && lower === 'content-length')) continue;
    if (drop.has(lower) || conn?.has(lower)) continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  for (const v of extra) out.push(v);
  return out;
}

/**
 * The upstream's response headers for the live client: everything except hop-by-hop
 * headers; `content-length` too when `reframe` (the gateway holds the end of the body until
 * the outcome is stored, so it sends chunked).
 */
export function clientResponseHeaders(headers: IncomingHttpHeaders, reframe: boolean): OutgoingHttpHeaders {
  const conn = connectionTokens(headers.connection);
  const drop = reframe ? RESPONSE_DROP_KEYED : HOP_BY_HOP;
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (drop.has(name) || conn?.has(name)) continue;
    out[name] = headers[name];
  }
  return out;
}

/** The allow-listed headers worth storing, minus the never-replayed and `Connection`-named ones. */
export function storedHeaders(headers: IncomingHttpHeaders, allow: ReadonlySet<string>): [string, string][] {
  const conn = connectionTokens(headers.connection);
  const out: [string, string][] = [];
  for (const name in headers) {
    if (!allow.has(name) || conn?.has(name) || isNeverReplayed(name)) continue;
    const value = headers[name];
    if (Array.isArray(value)) for (const v of value) out.push([name, v]);
    else if (value !== undefined) out.push([name, value]);
  }
  return out;
}

/**
 * Writes a stored response: its status, its headers, `Idempotent-Replayed: true` when it is
 * a replay, `x-should-retry: false` for a stored 5xx, `Idempotency-Replay: body-omitted` when
 * the body was over the limit, then the body, byte for byte.
 */
export function writeStored(
  res: ServerResponse,
  stored: StoredResponse,
  replayed: boolean,
  extra: readonly [string, string][] = [],
  marks: ReplayMarks = DEFAULT_MARKS,
): void {
  if (res.headersSent || res.destroyed) return;
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of extra.length
    ? [...stored.headers, ...markerHeaders(extra, marks)]
    : stored.headers) {
    const prev = headers[name];
    headers[name] =
      prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
  }
  const body = stored.body ?? '';
  if (replayed) {
    for (const name of marks.replayed) headers[name] = 'true';
    if (stored.status >= 500) for (const name of marks.noRetry) headers[name] = 'false';
    if (stored.omitted) headers['idempotency-replay'] = 'body-omitted';
  }
  if (stored.status !== 204 && stored.status !== 304) {
    headers['content-length'] = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
  }
  res.writeHead(stored.status, headers);
  res.end(body);
}

/** A problem+json response as a stored response (so it can be stored and replayed too). */
export function problem(type: ProblemType, detail?: string): StoredResponse {
  const p = problemBody(type, detail || undefined);
  const body = JSON.stringify(p);
  return {
    status: p.status,
    headers: [
      ['content-type', 'application/problem+json'],
      ['cache-control', 'no-store'],
    ],
    body,
    bytes: Buffer.byteLength(body),
  };
}

/** Writes a problem with extra headers (`Retry-After`, `Link`, `x-should-retry`). */
export function writeProblem(
  res: ServerResponse,
  type: ProblemType,
  detail?: string,
  extra: [string, string][] = [],
  marks: ReplayMarks = DEFAULT_MARKS,
): void {
  writeStored(res, problem(type, detail), false, extra, marks);
}

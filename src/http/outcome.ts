/**
 * The stored form of an HTTP response, and the two ways a response leaves idem: live (the
 * first execution, streamed to the client while it is captured) and replayed (from the store).
 *
 * @module
 */
import { concatBytes } from './body.ts';

/** A response as stored: status, allow-listed headers and the exact body bytes. */
export interface HttpOutcome {
  status: number;
  /** Allow-listed headers, lower-cased, in response order. */
  headers: [string, string][];
  body: Uint8Array;
  /** True when the body was over `maxStoredBodyBytes` and was not stored; `body` is empty. */
  bodyOmitted?: boolean;
}

/**
 * Statuses whose responses never carry a body.
 *
 * @example
 * NULL_BODY_STATUSES.has(204) // true
 */
export const NULL_BODY_STATUSES: ReadonlySet<number> = new Set([101, 103, 204, 205, 304]);

/** The header names that mark a replay, and those that say "do not retry" (`replayHeader`, `shouldRetryHeaders`). */
export interface ReplayMarks {
  replayed: readonly string[];
  noRetry: readonly string[];
}

/**
 * The default marker names: `Idempotent-Replayed` and `x-should-retry`.
 *
 * @example
 * replayResponse(outcome, DEFAULT_MARKS)
 */
export const DEFAULT_MARKS: ReplayMarks = { replayed: ['idempotent-replayed'], noRetry: ['x-should-retry'] };

/**
 * Idem's marker headers under the configured names: `x-should-retry` becomes every `noRetry`
 * name, `idempotent-replayed` every `replayed` name; other headers pass unchanged.
 *
 * @example
 * markerHeaders([['x-should-retry', 'false']], { replayed: ['idempotent-replayed'], noRetry: ['x-should-retry', 'stripe-should-retry'] })
 * // [['x-should-retry', 'false'], ['stripe-should-retry', 'false']]
 */
export function markerHeaders(headers: readonly [string, string][], marks: ReplayMarks): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, value] of headers) {
    if (name === 'x-should-retry') for (const n of marks.noRetry) out.push([n, value]);
    else if (name === 'idempotent-replayed') for (const n of marks.replayed) out.push([n, value]);
    else out.push([name, value]);
  }
  return out;
}

/**
 * The replay of a stored outcome: the stored status, the stored headers, the byte-identical
 * body, `Idempotent-Replayed: true`, and `x-should-retry: false` when the status is ≥ 500
 * (the original may have had effects; retrying cannot change the answer).
 *
 * @example
 * return replayResponse({ status: 201, headers: [['content-type', 'application/json']], body });
 */
export function replayResponse(outcome: HttpOutcome, marks: ReplayMarks = DEFAULT_MARKS): Response {
  const headers = new Headers();
  for (const [name, value] of outcome.headers) headers.append(name, value);
  for (const name of marks.replayed) headers.set(name, 'true');
  if (outcome.bodyOmitted) headers.set('idempotency-replay', 'body-omitted');
  if (outcome.status >= 500) for (const name of marks.noRetry) headers.set(name, 'false');
  const body = NULL_BODY_STATUSES.has(outcome.status) ? null : outcome.body;
  return new Response(body as ConstructorParameters<typeof Response>[0], { status: outcome.status, headers });
}

/** A copy of `bytes` that owns its whole buffer (so serializers never write a pooled buffer). */
export function ownBytes(bytes: Uint8Array): Uint8Array {
  const tight =
    bytes.constructor === Uint8Array &&
    bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength;
  return tight ? bytes : new Uint8Array(bytes);
}

/**
 * What a tee collected: the whole body (`omitted` when it passed the limit and was dropped,
 * `bytes` counting it all the same), or the error that ended it early.
 */
export type Collected =
  | { ok: true; body: Uint8Array; bytes: number; omitted?: boolean }
  | { ok: false; error: unknown };

/** How far the handler's body may run ahead of a slow client once it is past `maxBytes`. */
const CLIENT_BUFFER_BYTES = 64 * 1024;

/** The response's `Content-Length`, when it declares one. */
function declaredLength(headers: Headers): number | undefined {
  const value = headers.get('content-length');
  if (value === null || !/^\d{1,15}$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

/**
 * Streams `response` to a client while collecting its bytes for the store. Up to `maxBytes`,
 * the handler's body is read as fast as the handler produces it, whatever the client does: the
 * bytes the client has not read yet wait in its queue (the same buffers as the collected copy),
 * so `collected` settles when the handler's response is complete, and a client that stalls
 * cannot hold the key. Past `maxBytes` the collected bytes are dropped and the rest of the body
 * is read only as fast as the client reads (64 KiB of slack), only counted: the result is
 * `omitted`, and memory stays at about one limit's worth whatever the body's size.
 * The end (and, with a `Content-Length`, the last byte) reach the client only once `holdCloseUntil` settles, so a client
 * that finishes reading and retries at once finds the outcome already stored, even when the
 * response's `Content-Length` lets it see the end at the last byte. A client
 * that goes away does not stop the collection: the handler's response is read to the end.
 * With the default `maxBytes` (no limit) a whole body may be held for a client that does not read.
 *
 * @example
 * const { client, collected } = teeResponse(upstream, stored, 2 * 1024 * 1024);
 * respond(client); const c = await collected; // c.omitted when over 2 MiB
 */
export function teeResponse(
  response: Response,
  holdCloseUntil: Promise<unknown>,
  maxBytes = Number.POSITIVE_INFINITY,
): { client: Response; collected: Promise<Collected> } {
  const source = response.body;
  if (source === null) {
    return {
      client: response,
      collected: Promise.resolve({ ok: true, body: new Uint8Array(0), bytes: 0 }),
    };
  }
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let open = true;
  let resume: (() => void) | undefined;
  const wake = () => {
    resume?.();
    resume = undefined;
  };
  const stream = new ReadableStream<Uint8Array>(
    {
      start: (c) => {
        controller = c;
      },
      pull: wake,
      cancel: () => {
        open = false;
        wake();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: CLIENT_BUFFER_BYTES }),
  );
  const forward = (fn: () => void) => {
    if (!open) return;
    try {
      fn();
    } catch {
      open = false;
    }
  };
  /** Waits while the client's queue holds more than a buffer's worth (and the client is still there). */
  const backpressure = () =>
    open && (controller.desiredSize ?? 1) <= 0
      ? new Promise<void>((resolve) => (resume = resolve))
      : undefined;
  const collected = (async (): Promise<Collected> => {
    const reader = source.getReader();
    let chunks: Uint8Array[] | undefined = [];
    let size = 0;
    // With a Content-Length the client is done at the last byte, not at the end of the stream:
    // that byte waits with the end until the outcome is stored.
    const length = declaredLength(response.headers);
    let held: Uint8Array | undefined;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (chunks && size > maxBytes) chunks = undefined; // over the limit: stop collecting
        chunks?.push(value);
        if (length !== undefined && size >= length && held === undefined && value.byteLength > 0) {
          held = value.subarray(value.byteLength - 1);
          const rest = value.subarray(0, value.byteLength - 1);
          if (rest.byteLength > 0) forward(() => controller.enqueue(rest));
        } else forward(() => controller.enqueue(value));
        if (!chunks) await backpressure(); // within the limit the client's queue is the collected copy
      }
    } catch (error) {
      forward(() => controller.error(error));
      return { ok: false, error };
    }
    const last = held;
    const close = () =>
      forward(() => {
        if (last) controller.enqueue(last);
        controller.close();
      });
    holdCloseUntil.then(close, close);
    if (!chunks) return { ok: true, body: new Uint8Array(0), bytes: size, omitted: true };
    return { ok: true, body: ownBytes(concatBytes(chunks, size)), bytes: size };
  })();
  const client = new Response(stream, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  return { client, collected };
}

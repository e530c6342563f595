/**
 * Captures what an Express handler writes (`res.writeHead`, `res.write`, `res.end` and so
 * everything built on them: `res.json`, `res.send`, `res.sendFile`, piped streams) as a web
 * `Response` whose body streams as the handler writes. Nothing reaches the socket until the
 * adapter writes the response with the original methods. `res.write` applies backpressure like
 * the socket would: it returns false once 64 KiB wait unread in the capture, and `res` emits
 * `'drain'` when they are taken (the core takes them as fast as they come up to the stored-body
 * limit, then as fast as the client reads).
 *
 * @module
 */
import type { ServerResponse } from 'node:http';
import { type NodeWriters, writersOf } from '../node.ts';
import { NULL_BODY_STATUSES } from '../outcome.ts';

/** One captured response. */
export interface Capture {
  /** The methods `res` had before capturing: the adapter sends with these. */
  writers: NodeWriters;
  /** Resolves at the handler's first write; rejects with the handler's error (see `fail`). */
  response: Promise<Response>;
  /** The response the error handler wrote after `fail` (sent to the client as is). */
  errorResponse: Response | undefined;
  /** The error the handler threw, once `fail` was called. */
  failed: unknown;
  /** Marks the handler as failed: its key is released instead of storing the error response. */
  fail(error: unknown): void;
}

type Callback = (error?: Error | null) => void;

/** Bytes the handler may write ahead of the reader before `res.write` returns false. */
const CAPTURE_BUFFER_BYTES = 64 * 1024;

/** Starts capturing `res`. */
export function captureResponse(res: ServerResponse): Capture {
  const writers = writersOf(res);
  let resolve!: (r: Response) => void;
  let reject!: (e: unknown) => void;
  const response = new Promise<Response>((a, b) => {
    resolve = a;
    reject = b;
  });
  response.catch(() => {}); // observed by the adapter through the core
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  let begun = false;
  let failed = false;
  let needDrain = false;
  /** False once the capture holds a buffer's worth the reader has not taken (like a full socket). */
  const accepting = () => {
    if (controller === undefined || (controller.desiredSize ?? 1) > 0) return true;
    needDrain = true;
    return false;
  };

  const cap: Capture = {
    writers,
    response,
    errorResponse: undefined,
    failed: undefined,
    fail(error) {
      failed = true;
      cap.failed = error;
      if (begun) safely(() => controller?.error(error));
    },
  };

  const begin = () => {
    if (begun) return;
    begun = true;
    const headers = new Headers();
    for (const [name, value] of Object.entries(res.getHeaders())) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) headers.append(name, String(v));
    }
    const bodiless = NULL_BODY_STATUSES.has(res.statusCode) || res.req?.method === 'HEAD';
    const body = bodiless
      ? null
      : new ReadableStream<Uint8Array>(
          {
            start: (c) => {
              controller = c;
            },
            pull: () => {
              if (!needDrain) return;
              needDrain = false;
              res.emit('drain');
            },
          },
          new ByteLengthQueuingStrategy({ highWaterMark: CAPTURE_BUFFER_BYTES }),
        );
    const captured = new Response(body, { status: res.statusCode, headers });
    if (failed) {
      cap.errorResponse = captured;
      reject(cap.failed);
    } else resolve(captured);
  };
  const push = (chunk: unknown, encoding?: BufferEncoding) => {
    if (chunk === undefined || chunk === null) return;
    const bytes =
      typeof chunk === 'string' ? Buffer.from(chunk, encoding ?? 'utf8') : Buffer.from(chunk as Uint8Array);
    if (bytes.byteLength > 0) safely(() => controller?.enqueue(new Uint8Array(bytes)));
  };

  res.writeHead = function writeHead(this: ServerResponse, status: number, ...rest: unknown[]) {
    this.statusCode = status;
    if (typeof rest[0] === 'string') this.statusMessage = rest.shift() as string;
    setHeaders(this, rest[0]);
    begin();
    return this;
  } as ServerResponse['writeHead'];

  res.write = function write(this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    const cb = rest.find((a) => typeof a === 'function') as Callback | undefined;
    begin();
    push(chunk, typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : undefined);
    if (cb) process.nextTick(cb);
    return accepting();
  } as ServerResponse['write'];

  res.end = function end(this: ServerResponse, ...args: unknown[]) {
    const cb = args.find((a) => typeof a === 'function') as Callback | undefined;
    const [chunk, encoding] = args.filter((a) => typeof a !== 'function');
    begin();
    push(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : undefined);
    safely(() => controller?.close());
    res.writeHead = writers.writeHead as ServerResponse['writeHead'];
    res.write = writers.write as ServerResponse['write'];
    res.end = writers.end as ServerResponse['end'];
    if (cb) process.nextTick(cb);
    return this;
  } as ServerResponse['end'];

  res.flushHeaders = () => begin();
  return cap;
}

function setHeaders(res: ServerResponse, headers: unknown) {
  if (!headers) return;
  if (Array.isArray(headers)) {
    // [[name, value], …] or the flat [name, value, name, value, …] of rawHeaders
    const pairs = Array.isArray(headers[0])
      ? (headers as [string, string][])
      : headers.flatMap((_, i) => (i % 2 === 0 ? [[headers[i], headers[i + 1]]] : []));
    for (const [name, value] of pairs) res.appendHeader(String(name), String(value));
    return;
  }
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    if (value !== undefined) res.setHeader(name, value as string | string[]);
  }
}

function safely(fn: () => void) {
  try {
    fn();
  } catch {
    // the stream is already closed or errored: nothing more to capture
  }
}

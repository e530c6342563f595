/**
 * Bridges between Node's `http` objects and the web-standard core, shared by the Express and
 * Fastify adapters: reading a request body with a limit, building a `Request`, and writing a
 * `Response` to a `ServerResponse`.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BodyTooLargeError, concatBytes } from './body.ts';
import { DRAIN_LIMIT } from './pipeline.ts';
import { headerLines, invalidTargets, parseTarget } from './target.ts';

/**
 * Reads a Node request stream with a limit enforced while reading. Past the limit it stops
 * keeping the bytes but reads and discards the rest, up to `drainLimit` bytes in all (default
 * 8 MiB), before it throws {@link BodyTooLargeError}: a client that is still sending then reads
 * the 413 instead of a connection reset. Past `drainLimit` it pauses the stream and throws at once.
 */
export function readNodeBody(
  stream: NodeJS.ReadableStream,
  limit: number,
  drainLimit = Math.max(DRAIN_LIMIT, limit),
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    let over = false;
    const cleanup = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    const onData = (chunk: Buffer | string) => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      size += bytes.byteLength;
      if (size > drainLimit) {
        cleanup();
        stream.pause();
        reject(new BodyTooLargeError(limit));
        return;
      }
      if (size > limit) over = true;
      if (!over) chunks.push(bytes);
    };
    const onEnd = () => {
      cleanup();
      if (over) reject(new BodyTooLargeError(limit));
      else resolve(new Uint8Array(concatBytes(chunks, size)));
    };
    const onError = (error: unknown) => {
      cleanup();
      reject(error);
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}

/**
 * A body-less web `Request` with the method, URL and every header field line of `req`. Never
 * throws: a target that is not a path or an http(s) URL, or a bad `Host`, gives a request on a
 * placeholder URL that the core answers with 400 `invalid-target`. Pass `signal` (aborted when
 * the client's connection closes) so a waiting duplicate stops when its client goes away.
 */
export function webRequestOf(req: IncomingMessage, path: string, signal?: AbortSignal): Request {
  const headers = new Headers();
  const lines = new Map<string, string[]>();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.startsWith(':')) continue; // HTTP/2 pseudo-headers
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    const list = lines.get(lower);
    if (list) list.push(value);
    else lines.set(lower, [value]);
    try {
      headers.append(name, value);
    } catch {
      // a header value the Fetch API refuses cannot matter to idempotency
    }
  }
  const target = parseTarget(path);
  let url: URL | undefined;
  if (target.ok) {
    for (const host of [req.headers.host ?? 'localhost', 'localhost']) {
      try {
        url = new URL(`http://${host}${target.path}${target.search}`);
        break;
      } catch {
        // a Host the URL parser refuses: the placeholder host
      }
    }
  }
  const request = new Request(url ?? 'http://localhost/', { method: req.method ?? 'GET', headers, signal });
  headerLines.set(request, lines);
  if (!target.ok) invalidTargets.set(request, target.refusal);
  else if (!url) invalidTargets.set(request, { type: 'invalid-target', headers: [] });
  return request;
}

/**
 * A signal that aborts when the client's connection closes before `res` finished: hand it to
 * {@link webRequestOf} so a duplicate waiting for the first request's answer stops waiting (and
 * runs nothing) once its client has gone.
 *
 * @example
 * const request = webRequestOf(req, req.originalUrl, clientSignal(res));
 */
export function clientSignal(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  if (res.destroyed && !res.writableFinished) controller.abort();
  else
    res.once('close', () => {
      if (!res.writableFinished) controller.abort();
    });
  return controller.signal;
}

/** The `writeHead`, `write` and `end` to send with (the originals when an adapter wrapped them). */
export interface NodeWriters {
  writeHead: (this: ServerResponse, status: number) => unknown;
  write: (this: ServerResponse, chunk: Uint8Array) => boolean;
  end: (this: ServerResponse, chunk?: Uint8Array) => unknown;
}

/** The current methods of `res`. */
export function writersOf(res: ServerResponse): NodeWriters {
  return {
    writeHead: res.writeHead as NodeWriters['writeHead'],
    write: res.write as NodeWriters['write'],
    end: res.end as NodeWriters['end'],
  };
}

/**
 * Writes a web `Response` to a Node response: status, headers (set over those earlier
 * middleware set, such as CORS) and body. `stream: false` buffers the body first and sends a `Content-Length`. When the client
 * goes away mid-stream, the body stream is cancelled.
 */
export async function writeWebResponse(
  res: ServerResponse,
  response: Response,
  writers: NodeWriters = writersOf(res),
  stream = true,
): Promise<void> {
  for (const [name, value] of response.headers) {
    if (name !== 'set-cookie') res.setHeader(name, value);
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);
  if (!stream || response.body === null) {
    const bytes = response.body === null ? null : Buffer.from(await response.arrayBuffer());
    if (bytes !== null && !res.hasHeader('content-length')) res.setHeader('content-length', bytes.byteLength);
    writers.writeHead.call(res, response.status);
    if (bytes === null) writers.end.call(res);
    else writers.end.call(res, bytes);
    return;
  }
  writers.writeHead.call(res, response.status);
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const onClose = () => {
    if (!res.writableFinished) reader.cancel().catch(() => {});
  };
  res.once('close', onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (res.destroyed) continue;
      if (!writers.write.call(res, value)) {
        await new Promise<void>((resolve) => {
          const go = () => {
            res.off('drain', go);
            res.off('close', go);
            resolve();
          };
          res.on('drain', go);
          res.on('close', go);
        });
      }
    }
    if (!res.destroyed) writers.end.call(res);
  } catch {
    res.destroy();
  } finally {
    res.off('close', onClose);
  }
}

/** How much of an unread request body is read and dropped after an early answer (413), and for how long. */
const DISCARD_BYTES = 64 * 1024 * 1024;
const DISCARD_MS = 10_000;

/**
 * Sends `response` whole (with its `Content-Length`) while the client may still be sending,
 * then reads and drops the rest of the request body before ending it: closing the connection
 * with unread bytes would make the kernel reset it, and a client still sending would lose the
 * answer. Past {@link DISCARD_BYTES} or {@link DISCARD_MS} the connection is closed anyway.
 *
 * @example
 * if (!req.readableEnded) await answerBeforeDiscarding(req, res, problem413);
 */
export async function answerBeforeDiscarding(
  req: IncomingMessage,
  res: ServerResponse,
  response: Response,
): Promise<void> {
  const bytes = Buffer.from(await response.arrayBuffer());
  for (const [name, value] of response.headers) res.setHeader(name, value);
  res.setHeader('content-length', bytes.byteLength);
  res.writeHead(response.status);
  res.write(bytes);
  // nothing left to drop: a body already read to its end (or a gone client) emits no more events
  if (req.readableEnded || req.destroyed) return void res.end();
  await new Promise<void>((resolve) => {
    let dropped = 0;
    const done = () => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', done);
      req.off('close', done);
      req.off('error', done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      dropped += chunk.byteLength;
      if (dropped > DISCARD_BYTES) done();
    };
    const timer = setTimeout(done, DISCARD_MS);
    req.on('data', onData);
    req.once('end', done);
    req.once('close', done);
    req.once('error', done);
    req.resume();
  });
  res.end();
}

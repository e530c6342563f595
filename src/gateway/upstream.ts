/**
 * The upstream leg, on undici's lowest-level API (`Pool#dispatch` with a handler object):
 * each chunk arrives in a callback, with no stream objects in between, which measured fastest
 * (docs/gateway.md, "Choosing the proxy library").
 *
 * A failure is classified by whether the request could have reached the upstream: undici
 * calls `onRequestStart` only once a connection is open and the request is about to be
 * written, so an error before it (refused, DNS, TLS, connect timeout) proves the upstream
 * was never called, and the key is released. Any later error is indeterminate.
 *
 * @module
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { Pool } from 'undici';
import { InvalidOptionError } from '../core/errors.ts';
import { clientResponseHeaders, upstreamRequestHeaders, writeProblem } from './respond.ts';

/** Receives one upstream response. */
export interface ResponseSink {
  onStart(status: number, headers: IncomingHttpHeaders, control: FlowControl): void;
  onData(chunk: Buffer): void;
  onEnd(): void;
  /** `sent`: the request may have reached the upstream. `timeout`: undici gave up waiting. */
  onError(error: Error, sent: boolean, timeout: boolean): void;
}

/** Pauses the upstream while a client is slow. */
export interface FlowControl {
  pause(): void;
  resume(): void;
}

/** One upstream request with a buffered body. */
export interface ForwardRequest {
  method: string;
  /** The client's path and query. */
  url: string;
  /** Flat `[name, value, …]` list, already filtered. */
  headers: string[];
  body: Buffer;
}

/** The connection pool to the upstream. */
export interface Upstream {
  readonly origin: string;
  forward(request: ForwardRequest, sink: ResponseSink): void;
  /**
   * Streams a request that needs no idempotency both ways, aborting upstream if the client
   * leaves. `url` is the client's target in origin-form (the shared pipeline's `parseTarget`).
   */
  passThrough(req: IncomingMessage, res: ServerResponse, url: string, extra: readonly string[]): void;
  /** Opens (and closes) a connection to the upstream: the error message, or undefined when it is reachable. */
  probe(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

const NO_DROP: ReadonlySet<string> = new Set();

/** Runs a dispatch; one undici refuses outright (it throws) is reported instead of escaping. */
function guarded(onRefused: () => void, dispatch: () => unknown): void {
  try {
    dispatch();
  } catch {
    onRefused();
  }
}
const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/**
 * Opens a pool to `url` (`http(s)://host:port[/base]`; the base path prefixes every request).
 *
 * @example
 * const upstream = createUpstream('http://127.0.0.1:4000', { timeoutMs: 600_000, connectTimeoutMs: 10_000, connections: 128 });
 */
export function createUpstream(
  url: string,
  options: { timeoutMs: number; connectTimeoutMs: number; connections: number },
): Upstream {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidOptionError(`upstream must be an absolute http(s) URL, got ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new InvalidOptionError(`upstream must be http: or https:, got ${parsed.protocol}`);
  }
  if (parsed.search || parsed.hash)
    throw new InvalidOptionError('upstream must not have a query or fragment');
  const base = parsed.pathname.replace(/\/+$/, '');
  const pool = new Pool(parsed.origin, {
    connections: options.connections,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    connect: { timeout: options.connectTimeoutMs },
  });

  function forward(request: ForwardRequest, sink: ResponseSink): void {
    let sent = false;
    guarded(sink.onError.bind(sink, new Error('the upstream request was refused'), false, false), () =>
      pool.dispatch(
        { path: base + request.url, method: request.method, headers: request.headers, body: request.body },
        {
          onRequestStart() {
            sent = true;
          },
          onResponseStart(controller, status, headers) {
            sink.onStart(status, headers, controller);
          },
          onResponseData(_controller, chunk) {
            sink.onData(chunk);
          },
          onResponseEnd() {
            sink.onEnd();
          },
          onResponseError(_controller, error) {
            const code = (error as { code?: string }).code ?? '';
            sink.onError(error, sent, TIMEOUTS.has(code));
          },
        },
      ),
    );
  }

  function passThrough(
    req: IncomingMessage,
    res: ServerResponse,
    url: string,
    extra: readonly string[],
  ): void {
    let started = false;
    let sent = false;
    let aborted = false;
    let control: { abort(reason: Error): void } | undefined;
    res.once('close', () => {
      if (res.writableFinished) return;
      aborted = true;
      control?.abort(new Error('the client closed the connection'));
    });
    const hasBody =
      req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    const refused = () => {
      if (!res.headersSent) writeProblem(res, 'upstream-unavailable', 'the upstream request was refused');
      else res.destroy();
    };
    guarded(refused, () =>
      pool.dispatch(
        {
          path: base + url,
          method: req.method ?? 'GET',
          headers: upstreamRequestHeaders(req.rawHeaders, NO_DROP, true, extra),
          body: hasBody ? req : null,
        },
        {
          onRequestStart(controller) {
            sent = true;
            control = controller;
            if (aborted) controller.abort(new Error('the client closed the connection'));
          },
          onResponseStart(controller, status, headers) {
            started = true;
            res.writeHead(status, clientResponseHeaders(headers, false));
            res.on('drain', () => controller.resume());
          },
          onResponseData(controller, chunk) {
            if (!res.write(chunk)) controller.pause();
          },
          onResponseEnd() {
            res.end();
          },
          onResponseError(_controller, error) {
            if (started || aborted) {
              res.destroy();
              return;
            }
            const code = (error as { code?: string }).code ?? '';
            writeProblem(
              res,
              sent
                ? TIMEOUTS.has(code)
                  ? 'upstream-timeout'
                  : 'indeterminate-outcome'
                : 'upstream-unavailable',
              `${code || error.name}: ${error.message}`,
            );
          },
        },
      ),
    );
  }

  function probe(timeoutMs: number): Promise<void> {
    const port = Number(parsed.port || (parsed.protocol === 'https:' ? 443 : 80));
    const host = parsed.hostname.replace(/^\[|\]$/g, '');
    return new Promise((resolve, reject) => {
      const socket =
        parsed.protocol === 'https:'
          ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host })
          : net.connect({ host, port });
      const done = (error?: Error) => {
        socket.destroy();
        if (error) reject(error);
        else resolve();
      };
      socket.setTimeout(timeoutMs, () => done(new Error(`no connection within ${timeoutMs} ms`)));
      socket.once(parsed.protocol === 'https:' ? 'secureConnect' : 'connect', () => done());
      socket.once('error', done);
    });
  }

  return {
    origin: parsed.origin,
    forward,
    passThrough,
    probe,
    close: () => pool.close(),
  };
}

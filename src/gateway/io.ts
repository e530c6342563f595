/**
 * The gateway's Node I/O around the shared pipeline: header lines from raw headers, problems
 * written to a `ServerResponse`, the client going away, a bypass forward, `X-Forwarded-*`.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEFAULT_MARKS, type ReplayMarks } from '../http/outcome.ts';
import type { Refusal } from '../http/pipeline.ts';
import type { HeaderLines } from '../http/scope.ts';
import { clientResponseHeaders, writeProblem } from './respond.ts';
import type { ForwardRequest, Upstream } from './upstream.ts';

export const GONE = Symbol('gone');
export const TIMED_OUT = Symbol('timed out');

/** Answers a refusal; the connection closes if a body is still coming. */
export function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  refusal: Refusal,
  marks: ReplayMarks = DEFAULT_MARKS,
): void {
  const headers = [...refusal.headers];
  if (!req.complete && !headers.some(([n]) => n === 'connection')) headers.push(['connection', 'close']);
  writeProblem(res, refusal.type, refusal.detail, headers, marks);
}

/** Forwards without idempotency (the store is down and `onStoreError: 'open'`). */
export function bypass(upstream: Upstream, request: ForwardRequest, res: ServerResponse): void {
  upstream.forward(request, {
    onStart(status, headers) {
      res.writeHead(status, { ...clientResponseHeaders(headers, false), 'idempotency-status': 'bypassed' });
    },
    onData: (chunk) => void res.write(chunk),
    onEnd: () => res.end(),
    onError(error) {
      if (res.headersSent) res.destroy();
      else writeProblem(res, 'upstream-unavailable', error.message);
    },
  });
}

/** `Headers#get` and the separate field lines, over Node's raw headers. */
export function headerLines(req: IncomingMessage): HeaderLines {
  return {
    get(name) {
      const v = req.headers[name.toLowerCase()];
      return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
    },
    lines(name) {
      const lower = name.toLowerCase();
      const out: string[] = [];
      const raw = req.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        if ((raw[i] as string).toLowerCase() === lower) out.push(raw[i + 1] as string);
      }
      return out;
    },
  };
}

/** Fires when the client's connection closes before its response finished. */
export function clientGone(res: ServerResponse): {
  signal: AbortSignal;
  promise: Promise<typeof GONE>;
  dispose: () => void;
} {
  const controller = new AbortController();
  let resolve!: (v: typeof GONE) => void;
  const promise = new Promise<typeof GONE>((r) => (resolve = r));
  const onClose = () => {
    if (res.writableFinished) return;
    controller.abort();
    resolve(GONE);
  };
  res.once('close', onClose);
  return { signal: controller.signal, promise, dispose: () => res.off('close', onClose) };
}

/** A timer racing another promise: `promise` resolves with {@link TIMED_OUT}; `clear` stops it. */
export function deadline(ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<typeof TIMED_OUT>((r) => {
    timer = setTimeout(() => r(TIMED_OUT), ms);
  });
  return { promise, clear: () => clearTimeout(timer) };
}

/** The `X-Forwarded-For/-Proto/-Host` pairs sent upstream. */
export function forwardedFor(req: IncomingMessage): string[] {
  const out = ['x-forwarded-for', req.socket.remoteAddress ?? 'unknown'];
  out.push('x-forwarded-proto', (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http');
  if (req.headers.host) out.push('x-forwarded-host', req.headers.host);
  return out;
}

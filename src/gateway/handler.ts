/**
 * The gateway's request handler: accept the request (§6.1), fingerprint and scope it (§6.2),
 * then let the engine decide: forward and record (the holder), replay, join a live flight,
 * wait, or refuse (§6.4).
 *
 * @module
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Idem, RunOptions } from '../core/engine.ts';
import { FingerprintMismatchError, InProgressError, StoreUnavailableError } from '../core/errors.ts';
import { sameFingerprint } from '../core/keys.ts';
import { BodyTooLargeError } from '../http/body.ts';
import { type HeaderReader, httpFingerprint } from '../http/fingerprint.ts';
import { parseIdempotencyKey } from '../http/key.ts';
import { ANONYMOUS_SCOPE, anonymousScopeWarning, credentialScope } from '../http/scope.ts';
import { createFlight, type Flight } from './flight.ts';
import type { GatewayMetrics } from './metrics.ts';
import { type LiveState, recordingAction } from './record.ts';
import {
  clientResponseHeaders,
  type ForwardResult,
  upstreamRequestHeaders,
  writeProblem,
  writeStored,
} from './respond.ts';
import { type CompiledRoute, matchRoute } from './routes.ts';
import type { ForwardRequest, Upstream } from './upstream.ts';

/** Everything the handler uses, built once by `createGateway`. */
export interface HandlerDeps {
  idem: Idem;
  upstream: Upstream;
  routes: readonly CompiledRoute[];
  metrics: GatewayMetrics;
  namespace: string;
  keyHeader: string;
  downstreamKeyHeader: string | false;
  scopeHeaders: readonly string[];
  /** Receives the one-time warning about keyed requests in the shared anonymous scope. */
  logger: { warn(message: string): void };
  onStoreError: 'closed' | 'open';
  /** `Link` value of 400 `missing-key` answers. */
  describedBy: string;
}

const isRelease = (v: ForwardResult) => v.release === true;

/**
 * Builds the `(req, res)` listener that proxies one request.
 *
 * @example
 * http.createServer(createProxyHandler(deps)).listen(8080);
 */
export function createProxyHandler(deps: HandlerDeps) {
  const { idem, upstream, metrics, keyHeader } = deps;
  const drop = new Set([keyHeader, ...(deps.downstreamKeyHeader ? [deps.downstreamKeyHeader] : [])]);
  const flights = new Map<string, Flight>();
  let warnedAnonymous = false;

  return async function proxy(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const route = matchRoute(deps.routes, method, q < 0 ? url : url.slice(0, q));
    const forwarded = forwardedFor(req);
    if (!route || route.key === 'ignore') {
      metrics.request(route?.name ?? 'unmatched', 'passthrough');
      return upstream.passThrough(req, res, forwarded);
    }
    const field = req.headers[keyHeader];
    if (field === undefined) {
      metrics.withoutKey(route.name);
      if (route.key === 'required') {
        metrics.request(route.name, 'rejected');
        return refuse(req, res, 'missing-key', `this route requires an ${keyHeader} header`, [
          ['link', deps.describedBy],
        ]);
      }
      metrics.request(route.name, 'passthrough');
      return upstream.passThrough(req, res, forwarded);
    }
    const parsed = parseIdempotencyKey(Array.isArray(field) ? field.join(', ') : field);
    if (!parsed.ok) {
      metrics.request(route.name, 'rejected');
      return refuse(req, res, 'invalid-key', parsed.detail, [['link', deps.describedBy]]);
    }
    let body: Buffer;
    try {
      body = await readBody(req, route.maxRequestBytes);
    } catch (error) {
      metrics.request(route.name, 'rejected');
      if (error instanceof BodyTooLargeError) {
        return refuse(req, res, 'payload-too-large', error.message, [['connection', 'close']]);
      }
      res.destroy();
      return;
    }

    const headers = headerReader(req.headers);
    const fingerprint = httpFingerprint(
      { method, url: new URL(url, 'http://gateway'), headers, body },
      route.fingerprint,
    );
    const scope = [deps.namespace, ...credentialScope({ headers }, deps.scopeHeaders)];
    if (scope[1] === ANONYMOUS_SCOPE && !warnedAnonymous) {
      warnedAnonymous = true;
      deps.logger.warn(
        anonymousScopeWarning(
          deps.scopeHeaders,
          'Set scopeHeaders to the headers that identify a caller to tell them apart.',
        ),
      );
    }
    const request: ForwardRequest = {
      method,
      url,
      headers: upstreamRequestHeaders(req.rawHeaders, drop, false, forwarded),
      body,
    };

    let flight: Flight | undefined;
    let recordId = '';
    if (route.concurrency === 'attach') {
      recordId = idem.ids(parsed.key, scope).recordId;
      const live = flights.get(recordId);
      if (live) {
        if (!sameFingerprint(live.fingerprint, fingerprint)) {
          metrics.onEvent({ type: 'mismatch', recordId });
          metrics.request(route.name, 'rejected');
          return writeProblem(res, 'fingerprint-mismatch', undefined, [['x-should-retry', 'false']]);
        }
        if ((await live.head) && live.join(res)) {
          metrics.onEvent({ type: 'replayed', recordId, attempt: 1, shared: true });
          metrics.request(route.name, 'attached');
          return;
        }
      } else {
        flight = createFlight(fingerprint);
        flights.set(recordId, flight);
      }
    }

    const state: LiveState = { headWritten: false, broken: false };
    const options: RunOptions<ForwardResult> = {
      fingerprint,
      scope,
      ttl: route.ttlMs,
      lease: route.leaseMs,
      waitTimeout: route.waitMs,
      onInProgress: route.concurrency === 'reject' ? 'reject' : 'wait',
      releaseIf: isRelease,
    };
    let started = false;
    const action = recordingAction(deps, route, request, res, state, flight);
    try {
      // A duplicate whose holder released the key (503, refused) is re-run by the engine, with this action.
      const r = await idem.execute(
        parsed.key,
        (ctx) => {
          started = true;
          return action(ctx);
        },
        options,
      );
      if (!r.replayed) {
        metrics.request(route.name, 'executed');
        finishHolder(res, state, r.value);
      } else {
        metrics.request(route.name, 'replayed');
        writeStored(res, r.value, true);
      }
    } catch (error) {
      if (started) {
        // The outcome reached the client but could not be stored (store down, lease lost).
        metrics.request(route.name, 'error');
        if (state.headWritten && !state.broken) res.end();
        else if (!res.headersSent) writeProblem(res, 'store-unavailable', String((error as Error).message));
        else res.destroy();
      } else if (error instanceof StoreUnavailableError && deps.onStoreError === 'open') {
        metrics.request(route.name, 'bypassed');
        bypass(upstream, request, res);
      } else {
        metrics.request(route.name, 'rejected');
        refuseError(res, error);
      }
    } finally {
      if (flight) {
        flight.settle(!state.broken);
        if (flights.get(recordId) === flight) flights.delete(recordId);
      }
    }
  };
}

const NO_RETRY: [string, string][] = [['x-should-retry', 'false']];

function finishHolder(res: ServerResponse, state: LiveState, value: ForwardResult): void {
  // a synthetic answer (abandoned lease, upstream failure); a stored 5xx is final for this key
  if (!state.headWritten)
    writeStored(res, value, false, !value.release && value.status >= 500 ? NO_RETRY : []);
  else if (state.broken) res.destroy();
  else if (!res.destroyed) res.end();
}

function refuseError(res: ServerResponse, error: unknown): void {
  if (error instanceof FingerprintMismatchError) {
    writeProblem(res, 'fingerprint-mismatch', undefined, [['x-should-retry', 'false']]);
  } else if (error instanceof InProgressError) {
    const seconds = Math.min(60, Math.max(1, Math.ceil(error.retryAfterMs / 1000)));
    writeProblem(res, 'conflict', error.message, [['retry-after', String(seconds)]]);
  } else if (error instanceof StoreUnavailableError) {
    writeProblem(res, 'store-unavailable', error.message, [['retry-after', '1']]);
  } else {
    console.error('[idem gateway] unexpected error', error);
    writeProblem(res, 'handler-error', 'the gateway failed; see its log');
  }
}

/** Answers a problem without reading the body; the connection closes if a body is still coming. */
function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  type: 'missing-key' | 'invalid-key' | 'payload-too-large',
  detail: string,
  extra: [string, string][],
): void {
  if (!req.complete && !extra.some(([n]) => n === 'connection')) extra.push(['connection', 'close']);
  writeProblem(res, type, detail, extra);
}

/** Forwards without idempotency (the store is down and `onStoreError: 'open'`). */
function bypass(upstream: Upstream, request: ForwardRequest, res: ServerResponse): void {
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

/** Reads the request body, throwing `BodyTooLargeError` as soon as it outgrows `limit`. */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw new BodyTooLargeError(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > limit) throw new BodyTooLargeError(limit);
    chunks.push(chunk);
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

/** `Headers#get` over Node's header object (names are lower-case there). */
function headerReader(headers: IncomingHttpHeaders): HeaderReader {
  return {
    get(name) {
      const v = headers[name.toLowerCase()];
      return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
    },
  };
}

function forwardedFor(req: IncomingMessage): string[] {
  const out = ['x-forwarded-for', req.socket.remoteAddress ?? 'unknown'];
  out.push('x-forwarded-proto', (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http');
  if (req.headers.host) out.push('x-forwarded-host', req.headers.host);
  return out;
}

/**
 * The gateway's request handler. Every rule before the upstream is the shared HTTP pipeline's
 * (`src/http/pipeline.ts`: target, key, credentials scope, body, fingerprint, error → problem);
 * this file supplies only Node I/O, the recording action and attach flights.
 *
 * ```
 * parseTarget ─▶ 400 │ matchRoute ─▶ pass through │ prepareKeyed ─▶ pass │ 400/401/413
 *   ─▶ attach: join a live flight (until waitTimeout)
 *   ─▶ engine: forward and record (the holder) │ replay │ wait │ refusalFor(error)
 * ```
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Savings } from '../ai/savings.ts';
import type { Idem, RunOptions } from '../core/engine.ts';
import { FingerprintMismatchError, InProgressError, StoreUnavailableError } from '../core/errors.ts';
import { sameFingerprint } from '../core/keys.ts';
import { BodyTooLargeError } from '../http/body.ts';
import { engineKey } from '../http/key.ts';
import { readNodeBody } from '../http/node.ts';
import { type IncomingLike, type KeyRules, NO_RETRY, prepareKeyed, refusalFor } from '../http/pipeline.ts';
import { parseTarget } from '../http/target.ts';
import { createFlight, type Flight } from './flight.ts';
import { bypass, clientGone, deadline, forwardedFor, GONE, headerLines, refuse, TIMED_OUT } from './io.ts';
import { type LlmRequestFacts, requestFacts } from './llm.ts';
import { currentRequest, type GatewayLogger, type RequestNote, traceparentOf } from './log.ts';
import type { GatewayMetrics, RequestResult } from './metrics.ts';
import { type LiveState, recordingAction } from './record.ts';
import { type ForwardResult, upstreamRequestHeaders, writeProblem, writeStored } from './respond.ts';
import { type CompiledRoute, matchRoute } from './routes.ts';
import type { ForwardRequest, Upstream } from './upstream.ts';

export type { GatewayLogger } from './log.ts';

/** Everything the handler uses, built once by `createGateway`. */
export interface HandlerDeps {
  idem: Idem;
  upstream: Upstream;
  routes: readonly CompiledRoute[];
  metrics: GatewayMetrics;
  /** Where suppressed duplicates on LLM routes are counted. */
  savings?: Savings;
  namespace: string;
  keyHeader: string;
  downstreamKeyHeader: string | false;
  /** Headers that identify a caller, tried before the credential headers. */
  scopeHeaders: readonly string[];
  /** Cookies that identify a caller. */
  scopeCookies: readonly string[] | undefined;
  logger: GatewayLogger;
  onStoreError: 'closed' | 'open';
  /** `Link` value of 400 `missing-key` answers. */
  describedBy: string;
}

const isRelease = (v: ForwardResult) => v.release === true;

/**
 * Builds the `(req, res)` listener that proxies one request. It never throws: an unexpected
 * error is logged with the route (never the query) and answered 500 `internal-error`.
 *
 * @example
 * http.createServer(createProxyHandler(deps)).listen(8080);
 */
export function createProxyHandler(deps: HandlerDeps) {
  const { idem, upstream, metrics, keyHeader } = deps;
  const drop = new Set([keyHeader, ...(deps.downstreamKeyHeader ? [deps.downstreamKeyHeader] : [])]);
  const flights = new Map<string, Flight>();
  const warned = new Set<string>();
  const warnOnce = (message: string) => {
    if (warned.has(message)) return;
    warned.add(message);
    deps.logger.warn(message);
  };
  const logError = (message: string) =>
    deps.logger.error ? deps.logger.error(message) : console.error(message);
  /** Counts a request's result, and notes it for the request's log line. */
  const count = (route: string, result: RequestResult) => {
    metrics.request(route, result);
    const note = currentRequest.getStore();
    if (note) {
      note.route = route;
      note.result = result;
    }
  };

  return function proxy(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const trace = traceparentOf(req.headers.traceparent);
    // inside the recent-keys ring's context, its note is this request's: one context per request
    const outer = currentRequest.getStore();
    const note: RequestNote = outer ?? { traceparent: '', route: 'unmatched', result: 'error' };
    note.traceparent = trace.traceparent;
    const info = deps.logger.info?.bind(deps.logger);
    if (info) {
      const started = performance.now();
      res.once('close', () => {
        info(
          {
            route: note.route,
            method: req.method,
            result: note.result,
            status: res.statusCode,
            durationMs: Math.round((performance.now() - started) * 100) / 100,
            ...(note.recordId && { recordId: note.recordId() }),
            ...(!res.writableFinished && { aborted: true }),
            traceparent: note.traceparent,
          },
          'request',
        );
      });
    }
    // a request without a traceparent gets the gateway's, upstream too (an invalid one is forwarded as sent)
    const traced = req.headers.traceparent === undefined ? ['traceparent', trace.traceparent] : [];
    return outer ? handle(req, res, traced) : currentRequest.run(note, () => handle(req, res, traced));
  };

  async function handle(req: IncomingMessage, res: ServerResponse, traced: string[]): Promise<void> {
    let routeName = 'unmatched';
    try {
      const method = req.method ?? 'GET';
      const target = parseTarget(req.url ?? '/');
      if (!target.ok) {
        count(routeName, 'rejected');
        return refuse(req, res, target.refusal);
      }
      const url = target.path + target.search;
      const route = matchRoute(deps.routes, method, target.path);
      routeName = route?.name ?? routeName;
      const note = currentRequest.getStore();
      if (note) note.route = routeName;
      const forwarded = [...forwardedFor(req), ...traced];
      if (!route || route.key === 'ignore') {
        count(routeName, 'passthrough');
        return upstream.passThrough(req, res, url, forwarded);
      }
      const headers = headerLines(req);
      let aborted = false;
      const incoming: IncomingLike = {
        method,
        path: target.path,
        search: target.search,
        headers,
        readBody: (limit) =>
          readNodeBody(req, limit).catch((error: unknown) => {
            aborted = !(error instanceof BodyTooLargeError);
            throw error;
          }),
      };
      let prepared: Awaited<ReturnType<typeof prepareKeyed>>;
      try {
        prepared = await prepareKeyed(incoming, rulesOf(route));
      } catch (error) {
        if (!aborted) throw error;
        res.destroy(); // the client went away while sending its body
        return;
      }
      if (prepared.action === 'pass') {
        if (headers.get(keyHeader) === null) metrics.withoutKey(route.name);
        count(route.name, 'passthrough');
        return upstream.passThrough(req, res, url, forwarded);
      }
      if (prepared.action === 'refuse') {
        if (prepared.refusal.type === 'missing-key') metrics.withoutKey(route.name);
        count(route.name, 'rejected');
        return refuse(req, res, prepared.refusal, route.marks);
      }
      const { key: clientKey, scope, fingerprint, body } = prepared;
      // LLM routes: each turn of a conversation sent under one key is its own record
      const facts = route.llm ? requestFacts(body) : undefined;
      const key = facts?.turn === undefined ? clientKey : `${clientKey}#turn-${facts.turn}`;
      const request: ForwardRequest = {
        method,
        url,
        headers: upstreamRequestHeaders(req.rawHeaders, drop, false, forwarded),
        body: Buffer.from(body.buffer, body.byteOffset, body.byteLength),
      };
      await run(route, key, scope, fingerprint, request, res, clientKey, facts);
    } catch (error) {
      const why = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      logError(`[idem gateway] request failed on route ${routeName}: ${why}`);
      count(routeName, 'error');
      if (!res.headersSent) writeProblem(res, 'internal-error', 'see the gateway log');
      else res.destroy();
    }
  }

  function rulesOf(route: CompiledRoute): KeyRules {
    return {
      header: keyHeader,
      required: route.key === 'required',
      bodyLimit: route.maxRequestBytes,
      maxKeyLength: route.maxKeyLength,
      fingerprint: route.fingerprint,
      describedBy: deps.describedBy,
      scope: {
        prefix: [deps.namespace],
        headers: deps.scopeHeaders,
        cookies: deps.scopeCookies,
        required: route.scope === 'required',
        warn: warnOnce,
        remedy: 'Set scopeHeaders to the headers that identify a caller to tell them apart.',
      },
    };
  }

  async function run(
    route: CompiledRoute,
    key: string,
    scope: string[],
    fingerprint: string,
    request: ForwardRequest,
    res: ServerResponse,
    clientKey: string,
    facts: LlmRequestFacts | undefined,
  ): Promise<void> {
    const gone = clientGone(res);
    let storedOutcome: ForwardResult | undefined;
    const saved = (value: ForwardResult | undefined) => {
      if (!route.llm || !deps.savings || !value?.llm || value.status < 200 || value.status >= 300) return;
      recordId ||= idem.ids(engineKey(key), scope).recordId;
      deps.savings.record({
        provider: route.llm,
        id: recordId,
        model: value.llm.model,
        usage: value.llm.usage,
      });
    };
    let flight: Flight | undefined;
    let recordId = '';
    const note = currentRequest.getStore();
    if (note) note.recordId = () => (recordId ||= idem.ids(engineKey(key), scope).recordId);
    if (route.concurrency === 'attach') {
      recordId = idem.ids(engineKey(key), scope).recordId;
      const live = flights.get(recordId);
      if (live) {
        if (!sameFingerprint(live.fingerprint, fingerprint)) {
          metrics.onEvent({ type: 'mismatch', recordId });
          count(route.name, 'rejected');
          const refusal = refusalFor(new FingerprintMismatchError(), route.retry, deps.describedBy);
          return writeProblem(res, 'fingerprint-mismatch', refusal?.detail, refusal?.headers, route.marks);
        }
        const timer = deadline(route.waitMs);
        const head = await Promise.race([live.head, timer.promise, gone.promise]);
        timer.clear();
        if (head === GONE) {
          count(route.name, 'cancelled');
          return;
        }
        if (head === TIMED_OUT) {
          metrics.onEvent({ type: 'in_progress', recordId });
          count(route.name, 'rejected');
          const refusal = refusalFor(new InProgressError(route.leaseMs), route.retry, deps.describedBy);
          return writeProblem(res, 'conflict', refusal?.detail, refusal?.headers, route.marks);
        }
        if (head && live.join(res)) {
          metrics.onEvent({ type: 'replayed', recordId, attempt: 1, shared: true });
          count(route.name, 'attached');
          void live.outcome.then(saved);
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
    let startedAt = 0;
    const action = recordingAction(deps, route, request, res, state, flight, clientKey, facts);
    // A duplicate whose holder released the key (503, refused) is re-run by the engine, with
    // this action; one whose client went away runs nothing (the engine releases the key again).
    const execution = idem.execute(
      engineKey(key),
      (ctx) => {
        if (gone.signal.aborted) throw new Error('the client went away before the request ran');
        started = true;
        startedAt = Date.now();
        return action(ctx);
      },
      options,
    );
    type Settled = { r: Awaited<typeof execution> } | { error: unknown } | typeof GONE;
    const settled: Promise<Settled> = execution.then(
      (r) => ({ r }),
      (error: unknown) => ({ error }),
    );
    try {
      const first = await Promise.race([
        settled,
        gone.promise.then((): Promise<Settled> | Settled => (started ? settled : GONE)),
      ]);
      if (first === GONE) {
        count(route.name, 'cancelled');
        return;
      }
      if ('r' in first) {
        if (started) route.retry.record(Date.now() - startedAt);
        if (!first.r.replayed) {
          count(route.name, 'executed');
          if (!first.r.value.release) storedOutcome = first.r.value;
          finishHolder(res, state, first.r.value, route);
        } else {
          count(route.name, 'replayed');
          saved(first.r.value);
          writeStored(res, first.r.value, true, finalFor(route, first.r.value), route.marks);
        }
        return;
      }
      const error = first.error;
      if (started) {
        // The outcome reached the client but the store refused it (store down, lease lost):
        // the response must not end as a success no retry will find.
        count(route.name, 'error');
        const why = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        logError(
          `[idem gateway] the outcome on route ${route.name} was not stored (${why}); the response was ended as broken`,
        );
        if (!res.headersSent) writeProblem(res, 'store-unavailable', 'the outcome could not be stored');
        else res.destroy();
      } else if (error instanceof StoreUnavailableError && deps.onStoreError === 'open') {
        count(route.name, 'bypassed');
        bypass(upstream, request, res);
      } else {
        const refusal = refusalFor(error, route.retry, deps.describedBy);
        if (!refusal) throw error;
        count(route.name, 'rejected');
        writeProblem(res, refusal.type, refusal.detail, refusal.headers, route.marks);
      }
    } finally {
      gone.dispose();
      if (flight) {
        flight.settle(!state.broken, storedOutcome);
        if (flights.get(recordId) === flight) flights.delete(recordId);
      }
    }
  }
}

// --- Internal helpers ---

/**
 * On LLM routes, a stored 5xx also says `retry-after-ms: 0`: the AI SDK ignores
 * `x-should-retry` and retries any 5xx after 2 s and 4 s; told 0, its retries (replays, never
 * billed) end in milliseconds. The openai and Anthropic SDKs stop at `x-should-retry: false`.
 */
function finalFor(route: CompiledRoute, value: ForwardResult): [string, string][] {
  return route.llm && !value.release && value.status >= 500 ? [['retry-after-ms', '0']] : [];
}

function finishHolder(
  res: ServerResponse,
  state: LiveState,
  value: ForwardResult,
  route: CompiledRoute,
): void {
  // a synthetic answer (abandoned lease, upstream failure); a stored 5xx is final for this key
  if (!state.headWritten)
    writeStored(
      res,
      value,
      false,
      !value.release && value.status >= 500 ? [NO_RETRY, ...finalFor(route, value)] : [],
      route.marks,
    );
  else if (state.broken) res.destroy();
  else if (!res.destroyed) res.end();
}

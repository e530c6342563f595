/**
 * Running a prepared request under its key: claim through the engine, call the handler once,
 * stream its response to the client while capturing it, then store or release by the outcome
 * policy; or answer with the replay, 422, 409 or 503 the engine's answer calls for.
 *
 * @module
 */
import { isIdemError, OutcomeTooLargeError, StoreUnavailableError } from '../core/errors.ts';
import { echoesKey, storableHeaders } from './headers.ts';
import { engineKey } from './key.ts';
import type { ResolvedOptions } from './options.ts';
import { type HttpOutcome, NULL_BODY_STATUSES, ownBytes, replayResponse, teeResponse } from './outcome.ts';
import { refusalFor } from './pipeline.ts';
import { problemBody } from './problem.ts';
import type { RenderProblem } from './render.ts';
import type { RetryEstimator } from './retry.ts';
import type { IdempotencyEvent, IdempotencyInfo, IdempotencyPlan, Next } from './types.ts';

const infoByRequest = new WeakMap<Request, IdempotencyInfo>();

/**
 * The {@link IdempotencyInfo} of the request a handler is running for, when it runs under idem.
 *
 * @example
 * const handler = withIdempotency(async (req) => {
 *   const info = idempotencyInfo(req);
 *   await stripe.charges.create(charge, { idempotencyKey: info?.downstreamKey });
 *   return Response.json({ ok: true }, { status: 201 });
 * }, { idem });
 */
export function idempotencyInfo(request: Request): IdempotencyInfo | undefined {
  return infoByRequest.get(request);
}

/** What the executor needs from its core. */
export interface ExecutorTools {
  cfg: ResolvedOptions;
  warnOnce(message: string): void;
  problem: RenderProblem;
  retry: RetryEstimator;
  /** The `Link` value of 400 key problems. */
  describedBy: string;
}

/** Builds `execute(plan, next)` for one core. */
export function createExecutor({ cfg, warnOnce, problem, retry, describedBy }: ExecutorTools) {
  const noRetry = (headers: Headers) => {
    for (const name of cfg.shouldRetryHeaders) headers.set(name, 'false');
  };
  const marks = { replayed: cfg.replayMarkers, noRetry: cfg.shouldRetryHeaders };
  /** Tells `onEvent`; what it throws (or rejects with) is logged, never breaks the request. */
  async function emit(event: IdempotencyEvent): Promise<void> {
    if (!cfg.onEvent) return;
    try {
      await cfg.onEvent(event);
    } catch (error) {
      try {
        cfg.logger.error(`idem: the onEvent hook failed on a ${event.type} event`, error);
      } catch {
        // a logger that throws must not break the request
      }
    }
  }

  /**
   * The engine does the waiting and the single-flight: a duplicate in this process waits (or
   * not) by its own `onInProgress` and `waitTimeout`, and runs the handler itself when the
   * first request's response was released or its handler threw. What it hands back as a
   * replay is always a stored outcome, and is replayed as stored. A duplicate whose client
   * went away (the request's `signal`) stops waiting and runs nothing.
   */
  async function execute(plan: IdempotencyPlan, next: Next): Promise<Response> {
    const signal = plan.request.signal;
    let started = false;
    let startedAt = 0;
    let bodiless: Response | undefined;
    let handed: Response | undefined;
    let live!: (response: Response) => void;
    const handedOver = new Promise<Response>((resolve) => (live = resolve));
    let settled!: () => void;
    const done = new Promise<void>((resolve) => (settled = resolve));

    const run = cfg.idem.execute<HttpOutcome>(
      engineKey(plan.key),
      async (ctx) => {
        if (signal.aborted) throw new ClientGone();
        await emit({ type: 'miss', request: plan.request, key: plan.key });
        if (signal.aborted) throw new ClientGone();
        started = true;
        startedAt = Date.now();
        const info: IdempotencyInfo = {
          key: plan.key,
          recordId: ctx.recordId,
          attempt: ctx.attempt,
          mayHaveRun: ctx.mayHaveRun,
          downstreamKey: ctx.downstreamKey,
          signal: ctx.signal,
          bypassed: false,
        };
        infoByRequest.set(plan.request, info);
        let response: Response;
        try {
          response = await next(plan.request, info);
          if (!(response instanceof Response)) throw new TypeError('the handler did not return a Response');
        } catch (error) {
          throw new HandlerFailure(error);
        }
        response = withoutKeyEcho(response, ctx.downstreamKey, plan.key);
        const final = response.status >= 500 && cfg.policy(response.status) === 'store';
        if (response.body === null || NULL_BODY_STATUSES.has(response.status)) {
          bodiless = final ? withNoRetry(new Response(null, response), noRetry) : response;
          return toOutcome(response, new Uint8Array(0));
        }
        const { client, collected } = teeResponse(response, done, cfg.maxStoredBodyBytes);
        handed = brokenUnlessStored(client, run);
        if (final) noRetry(handed.headers);
        live(handed);
        const c = await collected;
        if (!c.ok) {
          cfg.logger.error(
            'idem: the response body failed mid-stream; storing 500 response-incomplete',
            c.error,
          );
          return incomplete();
        }
        return toOutcome(response, c.omitted ? undefined : c.body);
      },
      {
        ...cfg.run,
        fingerprint: plan.fingerprint,
        scope: plan.scope,
        releaseIf: (o) => cfg.policy(o.status) === 'release',
      },
    );
    run.then(settled, settled);
    run.then(
      () => started && retry.record(Date.now() - startedAt),
      () => {},
    );

    type First =
      | { response: Response }
      | { result: Awaited<typeof run> }
      | { error: unknown }
      | { gone: true };
    const answered: Promise<First> = Promise.race([
      handedOver.then((response) => ({ response })),
      run.then(
        (result) => ({ result }),
        (error: unknown) => ({ error }),
      ),
    ]);
    // A holder keeps going when its client leaves (the outcome is stored for the retry).
    const first = await Promise.race([
      answered,
      clientGone(signal).then((): Promise<First> | First => (started ? answered : { gone: true })),
    ]);
    if ('gone' in first) {
      run.catch(() => {}); // the engine gives up on its own; the action runs nothing for it
      return problem(plan.request, 'conflict', 'the client went away while waiting; nothing ran for it');
    }
    if ('response' in first) {
      run.catch((error) =>
        cfg.logger.error(
          `idem: the outcome was not stored (${describe(error)}); the response was ended as broken`,
          error,
        ),
      );
      return first.response;
    }
    if ('result' in first) {
      const { value, replayed } = first.result;
      if (replayed) {
        void emit({ type: 'hit', request: plan.request, key: plan.key, status: value.status });
        return replayResponse(value, marks); // stored: replayed as stored, whatever the policy says now
      }
      return bodiless ?? handed ?? replayResponse(value, marks);
    }
    const error = first.error;
    if (error instanceof HandlerFailure) {
      if (cfg.handlerErrors === 'problem') {
        cfg.logger.error('idem: the handler threw; the key was released', error.cause);
        return problem(plan.request, 'handler-error');
      }
      throw error.cause;
    }
    if (started && bodiless && isIdemError(error)) {
      cfg.logger.error(`idem: storing the outcome failed: ${describe(error)}`, error);
      return bodiless;
    }
    if (error instanceof StoreUnavailableError && !started && cfg.onStoreError === 'open') {
      return bypass(plan, next);
    }
    const afterRun =
      started && (error instanceof StoreUnavailableError || error instanceof OutcomeTooLargeError);
    const refusal = afterRun ? undefined : refusalFor(error, retry, describedBy);
    if (!refusal) throw error;
    if (refusal.type === 'conflict' || refusal.type === 'fingerprint-mismatch') {
      const status = refusal.type === 'conflict' ? 409 : 422;
      await emit({ type: 'conflict', request: plan.request, key: plan.key, status });
    }
    return problem(plan.request, refusal.type, refusal.detail, refusal.headers);
  }

  async function bypass(plan: IdempotencyPlan, next: Next): Promise<Response> {
    warnOnce(
      'idem: the store is unavailable; serving keyed requests WITHOUT idempotency (onStoreError: open)',
    );
    const { recordId, downstreamKey } = cfg.idem.ids(engineKey(plan.key), plan.scope);
    const info: IdempotencyInfo = {
      key: plan.key,
      recordId,
      attempt: 1,
      mayHaveRun: true,
      downstreamKey,
      signal: new AbortController().signal,
      bypassed: true,
    };
    infoByRequest.set(plan.request, info);
    const response = await next(plan.request, info);
    const marked = new Response(response.body, response);
    marked.headers.set('idempotency-status', 'bypassed');
    return marked;
  }

  /** The stored form of `response`; `body` undefined (or over the limit) stores it body-omitted. */
  function toOutcome(response: Response, body: Uint8Array | undefined): HttpOutcome {
    const headers = storableHeaders(response.headers, cfg.replayHeaders);
    if (body === undefined || body.byteLength > cfg.maxStoredBodyBytes) {
      return { status: response.status, headers, body: new Uint8Array(0), bodyOmitted: true };
    }
    return { status: response.status, headers, body: ownBytes(body) };
  }

  function incomplete(): HttpOutcome {
    const body = new TextEncoder().encode(
      JSON.stringify(problemBody('response-incomplete', undefined, cfg.problemBase)),
    );
    return { status: 500, headers: [['content-type', 'application/problem+json']], body };
  }

  return execute;
}

// --- Internal helpers ---

/** The client went away before the action started: it runs nothing (the engine releases the key). */
class ClientGone extends Error {
  override name = 'ClientGone';
  constructor() {
    super('the client went away before the request ran');
  }
}

/** Resolves when `signal` aborts; never when it cannot. */
function clientGone(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** The response with every header echoing the derived key set to the client's own key. */
function withoutKeyEcho(response: Response, downstreamKey: string, clientKey: string): Response {
  const echoes = [...response.headers].filter(([, v]) => echoesKey(v, downstreamKey)).map(([n]) => n);
  if (echoes.length === 0) return response;
  const own = new Response(response.body, response); // its headers may be immutable
  for (const name of echoes) own.headers.set(name, clientKey);
  return own;
}

function withNoRetry(response: Response, noRetry: (headers: Headers) => void): Response {
  noRetry(response.headers);
  return response;
}

/**
 * The live response, whose end waits for the outcome to be stored: when the store refuses it
 * (store down, lease lost), the stream errors instead of ending, so the client sees a broken
 * response, never a clean success for an outcome no retry will find.
 */
function brokenUnlessStored(client: Response, run: Promise<unknown>): Response {
  const body = (client.body as ReadableStream<Uint8Array>).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      async flush() {
        await run; // rejects: the stream errors
      },
    }),
  );
  return new Response(body, {
    status: client.status,
    statusText: client.statusText,
    headers: client.headers,
  });
}

/** Wraps what the handler threw, so it is told apart from errors of the engine and of other requests. */
class HandlerFailure extends Error {
  override name = 'HandlerFailure';
  constructor(cause: unknown) {
    super('the request handler failed', { cause });
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

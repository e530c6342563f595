/**
 * The web-standard core every HTTP integration runs on: a `Request`, a `next` that produces
 * the handler's `Response`, and the rows of the behaviour table (docs/http/behaviour.md).
 *
 * ```
 * prepare(request) ─▶ pass           method not covered, or no key and the key is optional
 *                  ─▶ respond(400)   missing (required) / malformed / repeated / oversize key
 *                  ─▶ respond(413)   body over bodyLimit (enforced while reading)
 *                  ─▶ execute(plan) ─▶ claim ─▶ next() ─▶ stream to the client, store or release
 *                                             ─▶ replay (stored status, headers, exact body)
 *                                             ─▶ 422 mismatch │ 409 in progress │ 503 store down
 * ```
 *
 * @module
 */
import { toMs } from '../core/duration.ts';
import {
  FingerprintMismatchError,
  InProgressError,
  InvalidKeyError,
  isIdemError,
  OutcomeTooLargeError,
  StoreUnavailableError,
} from '../core/errors.ts';
import { downstreamKeyOf, recordIdOf } from '../core/keys.ts';
import { BodyTooLargeError, readLimited } from './body.ts';
import { httpFingerprint } from './fingerprint.ts';
import { storableHeaders } from './headers.ts';
import { parseIdempotencyKey } from './key.ts';
import { type IdempotencyOptions, type ResolvedOptions, resolveOptions } from './options.ts';
import { type HttpOutcome, NULL_BODY_STATUSES, ownBytes, replayResponse, teeResponse } from './outcome.ts';
import { type ProblemType, problemBody, problemResponse } from './problem.ts';
import { credentialScope, isGlobalScope, scopeParts } from './scope.ts';

/** What the handler can learn about the idempotent execution it runs in. */
export interface IdempotencyInfo {
  /** The parsed key, as the client sent it. */
  key: string;
  /** The hashed record id (safe to log). */
  recordId: string;
  /** 1 for the first holder; +1 for each takeover of a crashed holder's lease. */
  attempt: number;
  /** True when an earlier holder may have run this request before crashing. */
  mayHaveRun: boolean;
  /** A key derived from the record: pass it to downstream APIs that take idempotency keys. */
  downstreamKey: string;
  /** Aborts when this request loses its lease on the key. */
  signal: AbortSignal;
  /** True when the store was down and the request runs without idempotency (`onStoreError: 'open'`). */
  bypassed: boolean;
}

/** Produces the handler's response for a request. */
export type Next = (request: Request, info: IdempotencyInfo) => Promise<Response>;

/** A request that carries a valid key and is ready to execute. */
export interface IdempotencyPlan {
  key: string;
  scope: string[];
  fingerprint: string;
  /** The request, with its body buffered (readable again). */
  request: Request;
  body: Uint8Array;
}

/** The decision {@link HttpIdempotency.prepare} makes before anything runs. */
export type Prepared =
  | { action: 'pass' }
  | { action: 'respond'; response: Response }
  | { action: 'execute'; plan: IdempotencyPlan };

/** Reads the request body, throwing `BodyTooLargeError` past `limit` bytes. */
export type BodyReader = (limit: number) => Promise<Uint8Array>;

/** The web-standard idempotency handler. */
export interface HttpIdempotency {
  /** The validated options. */
  readonly options: ResolvedOptions;
  /**
   * Checks method, key and body size, reads the body and computes scope and fingerprint.
   * `readBody` replaces reading `request.body` (for frameworks that own the body stream).
   */
  prepare(request: Request, readBody?: BodyReader): Promise<Prepared>;
  /** Claims the key, runs `next` once, and answers with its response or the stored one. */
  execute(plan: IdempotencyPlan, next: Next): Promise<Response>;
  /** `prepare`, then pass through, respond, or `execute`. */
  handle(
    request: Request,
    next: (request: Request, info?: IdempotencyInfo) => Promise<Response>,
  ): Promise<Response>;
}

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

/**
 * Creates the web-standard core: validates options once and answers requests by the table in
 * docs/http/behaviour.md. The adapters and `withIdempotency` are thin layers over it.
 *
 * @example
 * import { createIdem, memoryStore } from 'idem';
 * import { createHttpIdempotency } from 'idem/http';
 * const core = createHttpIdempotency({ idem: createIdem({ store: memoryStore() }), required: true });
 * export default { fetch: (req: Request) => core.handle(req, (r) => app.fetch(r)) };
 */
export function createHttpIdempotency(options: IdempotencyOptions): HttpIdempotency {
  const cfg = resolveOptions(options);
  const warned = new Set<string>();
  const warnOnce = (message: string) => {
    if (warned.has(message)) return;
    warned.add(message);
    cfg.logger.warn(message);
  };
  if (cfg.globalKeys) warnOnce(GLOBAL_WARNING);
  const problem = (type: ProblemType, detail?: string, headers?: HeadersLike) =>
    problemResponse(type, { base: cfg.problemBase, ...(detail && { detail }), ...(headers && { headers }) });
  const noRetry = { 'x-should-retry': 'false' };
  const waitBudgetMs =
    cfg.run.onInProgress === 'wait' ? toMs(cfg.run.waitTimeout ?? '30s', 'waitTimeout') + 50 : undefined;
  const describedBy = { ...noRetry, link: `<${cfg.docsUrl}>; rel="describedby"` };

  async function prepare(request: Request, readBody?: BodyReader): Promise<Prepared> {
    if (!cfg.methods.has(request.method.toUpperCase())) return { action: 'pass' };
    const field = request.headers.get(cfg.header);
    if (field === null) {
      if (!cfg.required) return { action: 'pass' };
      const detail = `this endpoint requires an ${cfg.header} header`;
      return { action: 'respond', response: problem('missing-key', detail, describedBy) };
    }
    const parsed = parseIdempotencyKey(field);
    if (!parsed.ok)
      return { action: 'respond', response: problem('invalid-key', parsed.detail, describedBy) };
    const tooLarge = () => ({
      action: 'respond' as const,
      response: problem('payload-too-large', `the limit is ${cfg.bodyLimit} bytes`, {
        ...noRetry,
        connection: 'close',
      }),
    });
    if (Number(request.headers.get('content-length') ?? 0) > cfg.bodyLimit) return tooLarge();
    let body: Uint8Array;
    try {
      body = readBody ? await readBody(cfg.bodyLimit) : await readLimited(request.body, cfg.bodyLimit);
    } catch (error) {
      if (error instanceof BodyTooLargeError) return tooLarge();
      throw error;
    }
    if (body.byteLength > cfg.bodyLimit) return tooLarge();
    const scope = await scopeOf(request);
    const fingerprint = httpFingerprint(
      { method: request.method, url: request.url, headers: request.headers, body },
      { headers: cfg.fingerprintHeaders, excludeFields: cfg.excludeFields },
    );
    const replayable = new Request(request, { body: body.byteLength ? body : null });
    return { action: 'execute', plan: { key: parsed.key, scope, fingerprint, request: replayable, body } };
  }

  async function scopeOf(request: Request): Promise<string[]> {
    if (cfg.scope) {
      const parts = scopeParts(await cfg.scope(request));
      if (isGlobalScope(parts)) warnOnce(GLOBAL_WARNING);
      return parts;
    }
    return cfg.globalKeys ? [] : credentialScope(request);
  }

  async function execute(plan: IdempotencyPlan, next: Next): Promise<Response> {
    // A caller that waited on another in-process request whose response was released (or
    // whose handler threw) finds the key free again: it runs the handler itself.
    const deadline = waitBudgetMs === undefined ? undefined : Date.now() + waitBudgetMs;
    for (let round = 0; round < 4; round++) {
      const result = await runOnce(plan, next, deadline);
      if (result !== RETRY) return result;
    }
    return inProgress(0);
  }

  async function runOnce(
    plan: IdempotencyPlan,
    next: Next,
    deadline?: number,
  ): Promise<Response | typeof RETRY> {
    let started = false;
    let abandoned = false;
    let failure: HandlerFailure | undefined;
    let bodiless: Response | undefined;
    let handed: Response | undefined;
    let live!: (response: Response) => void;
    const handedOver = new Promise<Response>((resolve) => (live = resolve));
    let settled!: () => void;
    const done = new Promise<void>((resolve) => (settled = resolve));

    const run = cfg.idem.execute<HttpOutcome>(
      plan.key,
      async (ctx) => {
        if (abandoned) throw new Abandoned(); // this request already answered 409
        started = true;
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
          failure = new HandlerFailure(error);
          throw failure;
        }
        if (response.body === null || NULL_BODY_STATUSES.has(response.status)) {
          bodiless = response;
          return toOutcome(response, new Uint8Array(0));
        }
        const { client, collected } = teeResponse(response, done);
        handed = client;
        live(client);
        const c = await collected;
        if (!c.ok) {
          cfg.logger.error(
            'idem: the response body failed mid-stream; storing 500 response-incomplete',
            c.error,
          );
          return incomplete();
        }
        return toOutcome(response, c.body);
      },
      {
        ...cfg.run,
        fingerprint: plan.fingerprint,
        scope: plan.scope,
        releaseIf: (o) => cfg.policy(o.status) === 'release',
      },
    );
    run.then(settled, settled);

    // Backstop for waiting: the engine's in-process single-flight waits for the holder
    // without a deadline, so `waitTimeout` is enforced here too.
    const outcome = Promise.race([
      handedOver.then((response) => ({ response })),
      run.then(
        (result) => ({ result }),
        (error: unknown) => ({ error }),
      ),
    ]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gaveUp = new Promise<{ gaveUp: true }>((resolve) => {
      if (deadline !== undefined)
        timer = setTimeout(() => resolve({ gaveUp: true }), Math.max(0, deadline - Date.now()));
    });
    let first = await Promise.race([outcome, gaveUp]);
    clearTimeout(timer);
    if ('gaveUp' in first) {
      if (!started) {
        abandoned = true;
        return inProgress(0);
      }
      first = await outcome; // the handler runs for this very request: no deadline for it
    }
    if ('response' in first) {
      run.catch((error) => cfg.logger.error(`idem: storing the outcome failed: ${describe(error)}`, error));
      return first.response;
    }
    if ('result' in first) {
      const { value, replayed } = first.result;
      if (!replayed) return bodiless ?? handed ?? replayResponse(value);
      // Shared from a concurrent in-process request whose response was released: not stored.
      if (cfg.policy(value.status) === 'release') return RETRY;
      return replayResponse(value);
    }
    const error = first.error;
    if (error instanceof HandlerFailure) {
      if (error !== failure) return RETRY;
      if (cfg.handlerErrors === 'problem') {
        cfg.logger.error('idem: the handler threw; the key was released', error.cause);
        return problem('handler-error');
      }
      throw error.cause;
    }
    if (started && bodiless && isIdemError(error)) {
      cfg.logger.error(`idem: storing the outcome failed: ${describe(error)}`, error);
      return bodiless;
    }
    if (error instanceof FingerprintMismatchError) {
      const detail = 'this key was first used with another method, path, query, headers or body';
      return problem('fingerprint-mismatch', detail, noRetry);
    }
    if (error instanceof InProgressError) return inProgress(error.retryAfterMs);
    if (error instanceof StoreUnavailableError && !started) {
      if (cfg.onStoreError === 'open') return bypass(plan, next);
      return problem('store-unavailable', 'retry shortly, or send the request without an Idempotency-Key', {
        'retry-after': '2',
      });
    }
    if (error instanceof OutcomeTooLargeError && !started) {
      return problem('outcome-too-large', error.message, { 'idempotent-replayed': 'true', ...noRetry });
    }
    if (error instanceof InvalidKeyError) return problem('invalid-key', error.message, describedBy);
    throw error;
  }

  function inProgress(retryAfterMs: number): Response {
    const seconds = Math.min(cfg.maxRetryAfterSeconds, Math.max(1, Math.ceil(retryAfterMs / 1000)));
    const detail = 'a request with this key is still running; retry after the indicated delay';
    return problem('conflict', detail, { 'retry-after': String(seconds) });
  }

  async function bypass(plan: IdempotencyPlan, next: Next): Promise<Response> {
    warnOnce(
      'idem: the store is unavailable; serving keyed requests WITHOUT idempotency (onStoreError: open)',
    );
    const recordId = recordIdOf(plan.scope, plan.key);
    const info: IdempotencyInfo = {
      key: plan.key,
      recordId,
      attempt: 1,
      mayHaveRun: true,
      downstreamKey: downstreamKeyOf(recordId),
      signal: new AbortController().signal,
      bypassed: true,
    };
    infoByRequest.set(plan.request, info);
    const response = await next(plan.request, info);
    const marked = new Response(response.body, response);
    marked.headers.set('idempotency-status', 'bypassed');
    return marked;
  }

  function toOutcome(response: Response, body: Uint8Array): HttpOutcome {
    const headers = storableHeaders(response.headers, cfg.replayHeaders);
    if (body.byteLength > cfg.maxStoredBodyBytes) {
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

  async function handle(
    request: Request,
    next: (request: Request, info?: IdempotencyInfo) => Promise<Response>,
  ) {
    const prepared = await prepare(request);
    if (prepared.action === 'pass') return next(request);
    if (prepared.action === 'respond') return prepared.response;
    return execute(prepared.plan, next);
  }

  return { options: cfg, prepare, execute, handle };
}

// --- Internal helpers ---

type HeadersLike = ConstructorParameters<typeof Headers>[0];

const RETRY = Symbol('retry');

const GLOBAL_WARNING =
  "idem: idempotency keys are global (no scope): one caller can replay or block another caller's key. " +
  'Pass scope: (req) => tenantOrUserId instead.';

/** Wraps what the handler threw, so it is told apart from errors of the engine and of other requests. */
/** The request gave up waiting and answered 409 before the engine handed it the key. */
class Abandoned extends Error {
  override name = 'Abandoned';
}

class HandlerFailure extends Error {
  override name = 'HandlerFailure';
  constructor(cause: unknown) {
    super('the request handler failed', { cause });
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

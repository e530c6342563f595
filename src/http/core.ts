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
import { readLimited } from './body.ts';
import { createExecutor, idempotencyInfo } from './execute.ts';
import { type IdempotencyOptions, type ResolvedOptions, resolveOptions } from './options.ts';
import { GLOBAL_WARNING, type IncomingLike, type KeyRules, prepareKeyed, type Refusal } from './pipeline.ts';
import { createProblemRenderer } from './render.ts';
import { createRetryEstimator } from './retry.ts';
import type { HeaderLines } from './scope.ts';
import { headerLines, invalidTargets, parseTarget } from './target.ts';
import type { BodyReader, IdempotencyInfo, IdempotencyPlan, Next, Prepared } from './types.ts';

export type { BodyReader, IdempotencyInfo, IdempotencyPlan, Next, Prepared };
export { idempotencyInfo };

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
  const problem = createProblemRenderer(cfg);
  const render = (request: Request, r: Refusal) => problem(request, r.type, r.detail, r.headers);
  const retry = createRetryEstimator(cfg.maxRetryAfterMs);
  const describedBy = `<${cfg.docsUrl}>; rel="describedby"`;
  const execute = createExecutor({ cfg, warnOnce, problem, retry, describedBy });

  async function prepare(request: Request, readBody?: BodyReader): Promise<Prepared> {
    if (!cfg.methods.has(request.method.toUpperCase())) return { action: 'pass' };
    if (cfg.skipRequest && (await cfg.skipRequest(request)) === true) return { action: 'pass' };
    if (request.headers.get(cfg.header) === null && !cfg.required) return { action: 'pass' };
    const invalid = invalidTargets.get(request);
    if (invalid) return { action: 'respond', response: await render(request, invalid) };
    const url = new URL(request.url);
    const target = parseTarget(url.pathname + url.search);
    if (!target.ok) return { action: 'respond', response: await render(request, target.refusal) };
    const incoming: IncomingLike = {
      method: request.method,
      path: target.path,
      search: target.search,
      headers: headerLinesOf(request),
      readBody: (limit) => (readBody ? readBody(limit) : readLimited(request.body, limit)),
    };
    const prepared = await prepareKeyed(incoming, rulesFor(request));
    if (prepared.action === 'pass') return prepared;
    if (prepared.action === 'refuse')
      return { action: 'respond', response: await render(request, prepared.refusal) };
    const { key, scope, fingerprint, body } = prepared;
    // a body that was read (even an empty one) must be handed on: a used Request cannot be copied without one
    const replayable = new Request(request, {
      body: request.body === null && body.byteLength === 0 ? null : body,
    });
    return { action: 'execute', plan: { key, scope, fingerprint, request: replayable, body } };
  }

  function rulesFor(request: Request): KeyRules {
    return {
      header: cfg.header,
      required: cfg.required,
      bodyLimit: cfg.bodyLimit,
      fingerprint: { headers: cfg.fingerprintHeaders, excludeFields: cfg.excludeFields },
      describedBy,
      maxKeyLength: cfg.maxKeyLength,
      customFingerprint: cfg.fingerprint
        ? (body) => (cfg.fingerprint as NonNullable<typeof cfg.fingerprint>)(request, body)
        : undefined,
      scope: {
        custom: cfg.scope ? () => (cfg.scope as NonNullable<typeof cfg.scope>)(request) : undefined,
        global: cfg.globalKeys,
        required: cfg.scopeRequired,
        cookies: cfg.scopeCookies,
        warn: warnOnce,
        remedy: 'Pass scope: (req) => tenantOrUserId to tell them apart.',
      },
    };
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

function headerLinesOf(request: Request): HeaderLines {
  const lines = headerLines.get(request);
  const headers = request.headers;
  if (!lines) return headers;
  return { get: (name) => headers.get(name), lines: (name) => lines.get(name.toLowerCase()) ?? [] };
}

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
import { BodyTooLargeError, readLimited } from './body.ts';
import { createExecutor, type HeadersLike, idempotencyInfo } from './execute.ts';
import { httpFingerprint } from './fingerprint.ts';
import { parseIdempotencyKey } from './key.ts';
import { type IdempotencyOptions, type ResolvedOptions, resolveOptions } from './options.ts';
import { type ProblemType, problemResponse } from './problem.ts';
import {
  ANONYMOUS_SCOPE,
  anonymousScopeWarning,
  CREDENTIAL_HEADERS,
  credentialScope,
  isGlobalScope,
  scopeParts,
} from './scope.ts';
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
  const problem = (type: ProblemType, detail?: string, headers?: HeadersLike) =>
    problemResponse(type, { base: cfg.problemBase, detail, headers });
  const noRetry = { 'x-should-retry': 'false' };
  const describedBy = { ...noRetry, link: `<${cfg.docsUrl}>; rel="describedby"` };
  const execute = createExecutor({ cfg, warnOnce, problem });

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
    if (cfg.globalKeys) return [];
    const parts = credentialScope(request);
    if (parts[0] === ANONYMOUS_SCOPE) warnOnce(ANONYMOUS_WARNING);
    return parts;
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

const GLOBAL_WARNING =
  "idem: idempotency keys are global (no scope): one caller can replay or block another caller's key. " +
  'Pass scope: (req) => tenantOrUserId instead.';
const ANONYMOUS_WARNING = anonymousScopeWarning(
  CREDENTIAL_HEADERS,
  'Pass scope: (req) => tenantOrUserId to tell them apart.',
);

/**
 * The published idempotency policy (draft-ietf-httpapi-idempotency-key-header §2.5 requires
 * one): an OpenAPI 3.1 fragment with the `Idempotency-Key` parameter, the responses the
 * gateway adds (400, 409, 413, 422, 502, 503, 504), the `Idempotent-Replayed` header, and an
 * `x-idempotency` extension per route carrying the key format, TTLs, fingerprint inputs,
 * scope, the store/release table and the streaming and large-body behaviour. Built once at
 * start-up and served as JSON.
 *
 * @module
 */
import { MAX_HTTP_KEY_LENGTH } from '../http/key.ts';
import { PROBLEM_BASE } from '../http/problem.ts';
import type { CompiledRoute } from './routes.ts';

/** Gateway-wide facts the document states. */
export interface PolicyFacts {
  keyHeader: string;
  downstreamKeyHeader: string | false;
  scopeHeaders: readonly string[];
  onStoreError: 'closed' | 'open';
}

const problemRef = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});
const STATUSES = [200, 201, 204, 301, 400, 401, 403, 404, 408, 409, 422, 425, 429, 500, 502, 503, 504, 529];

/**
 * Builds the policy document.
 *
 * @example
 * const json = JSON.stringify(policyDocument(routes, { keyHeader: 'idempotency-key', … }));
 */
export function policyDocument(routes: readonly CompiledRoute[], facts: PolicyFacts): object {
  const headerName = canonical(facts.keyHeader);
  const paths: Record<string, Record<string, object>> = {};
  const xRoutes = routes.map((r) => {
    const policy = routePolicy(r);
    if (!r.path.includes('*') && r.key !== 'ignore') {
      const template = r.path.replace(/:([^/]+)/g, '{$1}');
      const item: Record<string, object> = paths[template] ?? {};
      paths[template] = item;
      for (const m of r.methods) {
        item[m.toLowerCase()] = {
          parameters: [
            {
              $ref: `#/components/parameters/${r.key === 'required' ? 'IdempotencyKeyRequired' : 'IdempotencyKey'}`,
            },
          ],
          responses: {
            '400': { $ref: '#/components/responses/InvalidKey' },
            '409': { $ref: '#/components/responses/InProgress' },
            '413': { $ref: '#/components/responses/PayloadTooLarge' },
            '422': { $ref: '#/components/responses/FingerprintMismatch' },
            '502': { $ref: '#/components/responses/UpstreamFailure' },
            '503': { $ref: '#/components/responses/StoreUnavailable' },
            '504': { $ref: '#/components/responses/UpstreamTimeout' },
          },
          'x-idempotency': policy,
        };
      }
    }
    return { path: r.path, methods: [...r.methods], ...policy };
  });
  const keyParam = (required: boolean) => ({
    name: headerName,
    in: 'header',
    required,
    description: `An sf-string ("…") or a bare token of 1-${MAX_HTTP_KEY_LENGTH} printable ASCII characters (0x21-0x7E). One field line. Scoped to the caller's credentials.`,
    schema: { type: 'string', minLength: 1, maxLength: MAX_HTTP_KEY_LENGTH + 2, pattern: '^[\\x21-\\x7E]+$' },
  });
  return {
    openapi: '3.1.0',
    info: { title: 'Idempotency policy', version: '1' },
    paths,
    components: {
      parameters: { IdempotencyKey: keyParam(false), IdempotencyKeyRequired: keyParam(true) },
      headers: {
        IdempotentReplayed: {
          description:
            'true on a response replayed from the record (or joined from a live one); absent otherwise',
          schema: { type: 'string', enum: ['true'] },
        },
        IdempotencyReplay: {
          description:
            'body-omitted: the original body was over the stored-body limit; status and headers are replayed with an empty body',
          schema: { type: 'string', enum: ['body-omitted'] },
        },
      },
      schemas: {
        Problem: {
          type: 'object',
          required: ['type', 'title', 'status'],
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            detail: { type: 'string' },
          },
        },
      },
      responses: {
        InvalidKey: problemRef(
          `missing-key (route requires a key) or invalid-key; types under ${PROBLEM_BASE}`,
        ),
        InProgress: {
          ...problemRef(
            'conflict: a request with this key is in flight; retry after Retry-After seconds (a short estimate)',
          ),
          headers: {
            'Retry-After': { schema: { type: 'integer', minimum: 1, maximum: 60 } },
            'retry-after-ms': { schema: { type: 'integer', minimum: 1000, maximum: 60000 } },
          },
        },
        PayloadTooLarge: problemRef(
          'payload-too-large: the body is over the route limit; the upstream was not called',
        ),
        FingerprintMismatch: problemRef(
          'fingerprint-mismatch: the key was used for a different request; the record is unchanged',
        ),
        UpstreamFailure: problemRef(
          'upstream-unavailable (not called; key released) or indeterminate-outcome (may have executed; stored)',
        ),
        StoreUnavailable: problemRef(
          'store-unavailable: the idempotency store cannot answer; nothing was forwarded',
        ),
        UpstreamTimeout: problemRef('upstream-timeout: sent, but no answer in time; stored as indeterminate'),
      },
    },
    'x-idempotency': {
      keyHeader: headerName,
      keyFormat: `sf-string or bare token, 1-${MAX_HTTP_KEY_LENGTH} chars (per route: maxKeyLength) of 0x21-0x7E, exactly one field line`,
      methodsNeverKeyed: ['GET', 'HEAD', 'OPTIONS'],
      scope: `SHA-256 of the normalized request headers ${facts.scopeHeaders.join(', ')} (scopeHeaders first when present); keys of different callers never meet; a credential header sent twice is a 400`,
      targets:
        'origin-form paths; absolute http(s) URLs are reduced to their path; anything else is a 400 invalid-target',
      downstreamKey: facts.downstreamKeyHeader
        ? `the upstream gets ${canonical(facts.downstreamKeyHeader)}: idem_<derived>, stable per record, never the raw key`
        : 'no key is sent upstream',
      replayMarker:
        'Idempotent-Replayed: true; x-should-retry: false on a replayed 5xx (per route: replayMarkerHeaders, shouldRetryHeaders)',
      onStoreError:
        facts.onStoreError === 'closed'
          ? '503 store-unavailable'
          : 'forwarded, marked Idempotency-Status: bypassed',
      routes: xRoutes,
    },
  };
}

function routePolicy(r: CompiledRoute) {
  return {
    key: r.key,
    ttlSeconds: r.ttlMs / 1000,
    leaseSeconds: r.leaseMs / 1000,
    concurrency: r.concurrency,
    waitTimeoutSeconds: r.waitMs / 1000,
    maxRetryAfterSeconds: r.maxRetryAfterMs / 1000,
    scope: r.scope,
    fingerprint: {
      inputs: [
        'method',
        'path',
        'query (sorted)',
        'headers',
        'body (RFC 8785 canonical JSON for JSON types, raw bytes otherwise)',
      ],
      headers: r.fingerprint.headers,
      excludedBodyFields: r.fingerprint.excludeFields,
    },
    outcomes: Object.fromEntries(STATUSES.map((s) => [s, r.outcome(s)])),
    beforeSendFailure: 'release (502 upstream-unavailable)',
    onAbandoned: r.onAbandoned,
    replayHeaders: [...r.replayHeaders],
    replayMarkerHeaders: [...r.marks.replayed],
    shouldRetryHeaders: [...r.marks.noRetry],
    maxKeyLength: r.maxKeyLength,
    maxRequestBytes: r.maxRequestBytes,
    maxResponseBytes: r.maxResponseBytes,
    streaming: `responses stream as they arrive and are recorded; text/event-stream replays byte-identical${r.concurrency === 'attach' ? '; duplicates on the same instance join the live stream from its start' : ''}`,
  };
}

function canonical(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

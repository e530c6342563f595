/**
 * The requests `idem check` sends, and what it reads from each answer: status, body bytes, the
 * replay marker, whether a refusal is `application/problem+json`, and the identifiers that tell
 * one execution from another (response ids).
 *
 * @module
 */
import { cliFailure, EXIT_FAILED, EXIT_USAGE, networkCause } from './failure.ts';

/** One answer, as the check reads it. */
export interface ProbeAnswer {
  status: number;
  bytes: Uint8Array;
  /** `Idempotent-Replayed: true` (or `Idempotency-Replayed`) was sent. */
  replayed: boolean;
  /** The content type is `application/problem+json`. */
  problem: boolean;
  /** The problem `type`, when `problem`. */
  problemType: string;
  /** `Link: <…>; rel="describedby"` was sent (the draft's other way to describe a refusal). */
  describedBy: boolean;
  retryAfter: string | null;
  /** What identifies the execution behind this answer (`id=pay_1`), undefined when nothing does. */
  executionId: string | undefined;
  ms: number;
}

/** How answers are told apart: body fields and/or a response header. */
export interface IdSource {
  /** A JSON path (`data.payment.id`); undefined: every top-level `id`, `*_id`, `*Id` field. */
  field?: string;
  /** A response header whose value identifies the execution (`location`, `x-payment-id`). */
  header?: string;
}

/** What {@link createProbe} needs. */
export interface ProbeTarget {
  url: URL;
  method: string;
  headers: Record<string, string>;
  timeoutMs: number;
  ids: IdSource;
}

/**
 * Parses the URL of `idem check`; a usage error (exit 2) for anything but http(s).
 *
 * @example
 * parseTarget('http://127.0.0.1:8080/payments').pathname // '/payments'
 */
export function parseTarget(url: string): URL {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw cliFailure(
      `${JSON.stringify(url)} is not a URL: give one like http://127.0.0.1:8080/payments`,
      EXIT_USAGE,
    );
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw cliFailure(`${url} is not an http(s) URL`, EXIT_USAGE);
  }
  return target;
}

/**
 * A function sending one request: `key` undefined sends no key header; a string sends it as is
 * (even malformed). Throws a {@link cliFailure} (exit 1) naming the address when it cannot
 * reach the endpoint.
 *
 * @example
 * const send = createProbe(target);
 * const answer = await send('idempotency-key', 'k-1', '{"amount":1}');
 */
export function createProbe(target: ProbeTarget) {
  return async (keyHeader: string, key: string | undefined, body: string): Promise<ProbeAnswer> => {
    const started = performance.now();
    const headers: Record<string, string> = { 'content-type': 'application/json', ...target.headers };
    if (key !== undefined) headers[keyHeader] = key;
    let res: Response;
    try {
      res = await fetch(target.url, {
        method: target.method,
        headers,
        body,
        signal: AbortSignal.timeout(target.timeoutMs),
      });
    } catch (error) {
      const timedOut = (error as Error)?.name === 'TimeoutError';
      const cause = (error as Error)?.cause as Error | undefined;
      const why = timedOut
        ? `no answer within ${target.timeoutMs} ms (--timeout)`
        : (networkCause(error) ?? [(error as Error)?.message, cause?.message].filter(Boolean).join(': '));
      throw cliFailure(`cannot reach ${target.url.href}: ${why}`, EXIT_FAILED, error);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    const problem = /application\/problem\+json/i.test(res.headers.get('content-type') ?? '');
    const marker = res.headers.get('idempotent-replayed') ?? res.headers.get('idempotency-replayed');
    return {
      status: res.status,
      bytes,
      replayed: marker?.trim().toLowerCase() === 'true',
      problem,
      problemType: problem ? problemType(bytes) : '',
      describedBy: /rel="?describedby"?/i.test(res.headers.get('link') ?? ''),
      retryAfter: res.headers.get('retry-after'),
      executionId: executionId(res.headers, bytes, target.ids),
      ms: Math.round(performance.now() - started),
    };
  };
}

function problemType(bytes: Uint8Array): string {
  try {
    return (JSON.parse(Buffer.from(bytes).toString('utf8')) as { type?: string }).type ?? '';
  } catch {
    return '(the problem+json body is not JSON)';
  }
}

const ID_FIELD = /^(id|.+_id|.+[a-z0-9]Id)$/;

/**
 * What identifies the execution behind one answer: the `--id-header` value and the `--id-field`
 * value (or every top-level `id` / `*_id` / `*Id` field of a JSON object body), joined;
 * undefined when there is none.
 *
 * @example
 * executionId(new Headers(), new TextEncoder().encode('{"id":"pay_1","amount":1}'), {}) // 'id=pay_1'
 */
export function executionId(headers: Headers, bytes: Uint8Array, ids: IdSource): string | undefined {
  const parts: string[] = [];
  if (ids.header) {
    const value = headers.get(ids.header);
    if (value !== null && value !== '') parts.push(`${ids.header.toLowerCase()}=${value}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    body = undefined;
  }
  if (ids.field) {
    const value = ids.field
      .split('.')
      .reduce<unknown>(
        (at, part) => (at && typeof at === 'object' ? (at as Record<string, unknown>)[part] : undefined),
        body,
      );
    if (isIdValue(value)) parts.push(`${ids.field}=${String(value)}`);
  } else if (!ids.header && body && typeof body === 'object' && !Array.isArray(body)) {
    for (const [name, value] of Object.entries(body as Record<string, unknown>)) {
      if (ID_FIELD.test(name) && isIdValue(value)) parts.push(`${name}=${String(value)}`);
    }
  }
  return parts.length ? parts.join(' ') : undefined;
}

const isIdValue = (value: unknown) =>
  (typeof value === 'string' && value !== '') || (typeof value === 'number' && Number.isFinite(value));

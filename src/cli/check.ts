/**
 * `idem check URL`: does this endpoint honour `Idempotency-Key`? Sends one POST twice with
 * one fresh key (the second must be a replay: same status, `Idempotent-Replayed: true`, the
 * same body), then the same key with another body (must be 422).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { cliFailure, EXIT_FAILED, EXIT_USAGE, networkCause } from './failure.ts';

/** Options of {@link checkEndpoint}. */
export interface CheckOptions {
  /** The JSON body (a string) of the first two requests. Default: a small object with a random nonce. */
  data?: string;
  /** Extra request headers (`Authorization`…). */
  headers?: Record<string, string>;
  /** Default `'idempotency-key'`. */
  keyHeader?: string;
  /** Per request. Default 30 s. */
  timeoutMs?: number;
}

/** One step of the check. */
export interface CheckStep {
  name: string;
  status: number;
  ok: boolean;
  note: string;
}

/**
 * Runs the check; never throws for an HTTP answer, only for a URL it cannot reach (an Error whose
 * message names the address and the cause, e.g. `ECONNREFUSED 127.0.0.1:8080`) or bad input.
 *
 * @example
 * const { ok, steps } = await checkEndpoint('http://127.0.0.1:8080/payments');
 */
export async function checkEndpoint(
  url: string,
  options: CheckOptions = {},
): Promise<{ ok: boolean; key: string; steps: CheckStep[] }> {
  const key = `idem-check-${randomBytes(8).toString('hex')}`;
  const keyHeader = options.keyHeader ?? 'idempotency-key';
  const data = options.data ?? JSON.stringify({ idemCheck: randomBytes(6).toString('hex'), amount: 1 });
  let other: string;
  try {
    const parsed = JSON.parse(data) as unknown;
    other = JSON.stringify({ idemCheckOther: true, original: parsed });
  } catch {
    throw cliFailure('--data must be JSON', EXIT_USAGE);
  }
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
  const timeoutMs = options.timeoutMs ?? 30_000;
  const send = async (body: string) => {
    const started = performance.now();
    let res: Response;
    try {
      res = await fetch(target, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...options.headers, [keyHeader]: key },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const timedOut = (error as Error)?.name === 'TimeoutError';
      const cause = (error as Error)?.cause as Error | undefined;
      const why = timedOut
        ? `no answer within ${timeoutMs} ms`
        : (networkCause(error) ?? [(error as Error)?.message, cause?.message].filter(Boolean).join(': '));
      throw cliFailure(`cannot reach ${target.href}: ${why}`, EXIT_FAILED, error);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    return { res, bytes, ms: Math.round(performance.now() - started) };
  };

  const steps: CheckStep[] = [];
  const first = await send(data);
  const refusal = first.res.headers.get('content-type')?.includes('problem+json')
    ? REFUSALS.find(([type]) => problemType(first.bytes).endsWith(`/${type}`))
    : undefined;
  const firstOk = !refusal && (first.res.status < 500 || [500, 502, 504].includes(first.res.status));
  steps.push({
    name: `POST with ${keyHeader}: ${key}`,
    status: first.res.status,
    ok: firstOk,
    note: refusal
      ? `refused ${problemType(first.bytes)}: the request never ran; ${refusal[1]}`
      : `${first.bytes.byteLength} bytes in ${first.ms} ms${first.res.headers.get('idempotent-replayed') === 'true' ? ' (already marked as a replay?)' : ''}`,
  });
  if (refusal) return { ok: false, key, steps };

  const second = await send(data);
  const replayed = second.res.headers.get('idempotent-replayed') === 'true';
  const same =
    second.res.status === first.res.status && Buffer.from(second.bytes).equals(Buffer.from(first.bytes));
  const notes = [
    replayed ? 'Idempotent-Replayed: true' : 'no Idempotent-Replayed header',
    same ? 'identical status and body' : 'status or body differs',
  ];
  if (second.res.status === 409)
    notes.push(`still in progress (Retry-After: ${second.res.headers.get('retry-after')})`);
  steps.push({
    name: 'the same request again',
    status: second.res.status,
    ok: replayed && same,
    note: notes.join(', '),
  });

  const third = await send(other);
  const problem = third.res.headers.get('content-type')?.includes('problem+json')
    ? ` ${problemType(third.bytes)}`
    : '';
  steps.push({
    name: 'the same key with another body',
    status: third.res.status,
    ok: third.res.status === 422,
    note:
      third.res.status === 422 ? `refused${problem}` : 'expected 422 (the key is bound to the first request)',
  });
  return { ok: steps.every((s) => s.ok), key, steps };
}

/** idem's refusals of the request itself: the endpoint was not exercised, so nothing was checked. */
const REFUSALS: readonly (readonly [string, string])[] = [
  ['missing-credentials', "pass the caller's credentials, e.g. -H 'Authorization: …'"],
  ['duplicate-credentials', 'send each credential header once'],
  ['invalid-key', 'the endpoint refuses the generated key (a maxKeyLength under 27?)'],
  ['missing-key', 'give the key header name with --key-header'],
  ['payload-too-large', 'send a smaller body with -d'],
  ['invalid-target', 'check the URL'],
];

function problemType(bytes: Uint8Array): string {
  try {
    return (JSON.parse(Buffer.from(bytes).toString('utf8')) as { type?: string }).type ?? '';
  } catch {
    return '(the problem+json body is not JSON)';
  }
}

/** The report `idem check` prints. */
export function formatCheck(url: string, result: { ok: boolean; steps: CheckStep[] }): string {
  const lines = [`idem check ${url}`];
  result.steps.forEach((s, i) => {
    lines.push(`  ${s.ok ? '✓' : '✗'} ${i + 1}. ${s.name.padEnd(44)} → ${s.status}  ${s.note}`);
  });
  const notRun = result.steps.length === 1 && !result.ok;
  lines.push(
    result.ok
      ? 'result: idempotent'
      : notRun
        ? 'result: not checked: the first request was refused (see ✗ above)'
        : 'result: NOT idempotent (see ✗ above)',
  );
  return lines.join('\n');
}

/**
 * The fuzz slice's oracle and driver: sends groups of cases (raw socket or fetch), judges
 * every answer, counts how often the handler / upstream ran per logical key + scope, and
 * reports violations grouped by cause, with the seed to replay them.
 */
import { createHash } from 'node:crypto';
import { type FuzzCase, type FuzzGroup, toBytes } from './cases.ts';
import { header, sendRaw, type WireReply } from './wire.ts';

/** Marks a response the handler (or upstream) produced. */
export const EXEC_HEADER = 'x-fuzz-exec';
/** Statuses idem's own answers may have (documented problem types). */
const IDEM_STATUSES = new Set([400, 409, 413, 422]);
/** What Node's HTTP parser answers a request it cannot parse with (no content type, no body). */
const TRANSPORT_STATUSES = new Set([400, 413, 414, 431, 501, 505]);
/** Upper bound of a 409's Retry-After (the documented default `maxRetryAfter`). */
const MAX_RETRY_AFTER = 5;
const REQUEST_TIMEOUT_MS = 8000;

export interface Violation {
  cause: string;
  case: FuzzCase;
  detail: string;
}

/** Counts handler executions per logical key + scope, and what each one received. */
export function createLedger() {
  const runs = new Map<string, string[]>();
  return {
    /** Called by the handler / upstream with the request's tag headers and body. */
    record(caseId: string | undefined, logical: string | undefined) {
      if (!logical) return;
      const list = runs.get(logical) ?? [];
      list.push(caseId ?? '?');
      runs.set(logical, list);
    },
    twice(): [string, string[]][] {
      return [...runs].filter(([, ids]) => ids.length > 1);
    },
  };
}
export type Ledger = ReturnType<typeof createLedger>;

/** The body an executing handler answers with: which case ran, and a hash of what it received. */
export function execBody(caseId: string | undefined, body: Uint8Array): string {
  return JSON.stringify({ ran: caseId ?? null, h: sha(body) });
}

export const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 16);

/** Sends every group (at most `parallel` groups at once) and judges every reply. */
export async function runGroups(
  groups: FuzzGroup[],
  target: { port: number; url: string },
  parallel: number,
): Promise<{ violations: Violation[]; sent: number }> {
  const violations: Violation[] = [];
  let sent = 0;
  let next = 0;
  const worker = async () => {
    while (next < groups.length) {
      const group = groups[next++] as FuzzGroup;
      const send = async (c: FuzzCase) => {
        sent++;
        const reply = await sendCase(c, target);
        for (const v of judge(c, reply)) violations.push(v);
        return reply;
      };
      if (group.concurrent) {
        await Promise.all(group.cases.map((c) => send(c)));
        continue;
      }
      // In order: once a request got its whole answer, a retry of the same request gets the
      // replay, never a 409 (the response ends only after the outcome is stored).
      const answered = new Set<string>();
      for (const c of group.cases) {
        const reply = await send(c);
        const same = c.logical && `${c.logical}|${sha(c.body)}`;
        if (!same || reply.kind !== 'response') continue;
        if (reply.status === 409 && answered.has(same)) {
          violations.push({
            cause: '409 for a retry sent after the first answer was complete (documented: the replay)',
            case: c,
            detail: `retry-after: ${header(reply, 'retry-after')}`,
          });
        }
        if (header(reply, EXEC_HEADER) === '1' || header(reply, 'idempotent-replayed') === 'true')
          answered.add(same);
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return { violations, sent };
}

async function sendCase(c: FuzzCase, target: { port: number; url: string }): Promise<WireReply> {
  if (!c.viaFetch) {
    const options = { timeoutMs: REQUEST_TIMEOUT_MS, halfClose: c.framing === 'long', trickle: c.trickle };
    return sendRaw(target.port, toBytes(c), options);
  }
  try {
    const headers = new Headers();
    for (const [n, v] of c.headers) headers.append(n, v);
    headers.set('x-fuzz-case', c.id);
    if (c.logical) headers.set('x-fuzz-logical', Buffer.from(c.logical).toString('base64url'));
    const res = await fetch(new URL(c.target, target.url), {
      method: c.method,
      headers,
      body: c.method === 'GET' || c.method === 'HEAD' ? undefined : new Uint8Array(c.body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const map = new Map<string, string[]>();
    for (const [n, v] of res.headers) map.set(n, [...(map.get(n) ?? []), v]);
    return { kind: 'response', status: res.status, headers: map, body: Buffer.from(await res.arrayBuffer()) };
  } catch (error) {
    const e = error as Error;
    if (e.name === 'TimeoutError') return { kind: 'timeout' };
    return { kind: 'closed', detail: `fetch: ${(e.cause as Error)?.message ?? e.message}` };
  }
}

/** Everything wrong with `reply` as the answer to `c`. */
export function judge(c: FuzzCase, reply: WireReply): Violation[] {
  const out: Violation[] = [];
  const bad = (cause: string, detail: string) => out.push({ cause, case: c, detail });
  if (reply.kind === 'timeout') {
    bad('hang: no answer within the per-request timeout', `${REQUEST_TIMEOUT_MS} ms`);
    return out;
  }
  if (reply.kind === 'closed') {
    // A client that promised more bytes than it sent and hung up may get no answer.
    if (c.framing !== 'long') bad('connection closed without a response', reply.detail);
    return out;
  }
  const type = header(reply, 'content-type') ?? '';
  const executed = header(reply, EXEC_HEADER) !== undefined;
  const replayed = header(reply, 'idempotent-replayed') === 'true';
  const transport =
    !executed && !replayed && type === '' && TRANSPORT_STATUSES.has(reply.status) && reply.body.length < 64;
  if (replayed) {
    if (reply.status >= 500) bad('idem replays a stored 5xx of its own', `${reply.status} ${type}`);
    const original = parseExec(reply.body);
    if (original && original.h !== sha(c.body)) {
      bad('replayed the response of another body (fingerprint ignored a difference)', `ran ${original.ran}`);
    }
  } else if (!executed && !transport) {
    if (reply.status >= 500) bad(`idem answered ${reply.status}`, `${type} ${snippet(reply.body)}`);
    else if (!IDEM_STATUSES.has(reply.status) || !type.startsWith('application/problem+json')) {
      bad('idem answered outside the documented problems', `${reply.status} ${type} ${snippet(reply.body)}`);
    }
    if (reply.status === 409) {
      const after = Number(header(reply, 'retry-after'));
      if (!(after >= 1 && after <= MAX_RETRY_AFTER)) {
        bad(
          `409 Retry-After missing or over ${MAX_RETRY_AFTER}s`,
          `retry-after: ${header(reply, 'retry-after')}`,
        );
      }
    }
  }
  if (c.expect && !c.expect.includes(reply.status) && !transport) {
    const what = executed ? 'ran the handler' : replayed ? 'replayed' : `answered ${reply.status}`;
    bad(`expected ${c.expect.join('/')} but idem ${what}`, `${reply.status} ${type} ${snippet(reply.body)}`);
  }
  return out;
}

function parseExec(body: Buffer): { ran: string; h: string } | undefined {
  try {
    const v = JSON.parse(body.toString('utf8')) as { ran?: string; h?: string };
    return typeof v.h === 'string' ? { ran: String(v.ran), h: v.h } : undefined;
  } catch {
    return undefined;
  }
}

const snippet = (b: Buffer) => JSON.stringify(b.subarray(0, 80).toString('utf8'));

/** Ledger entries that ran more than once, as violations. */
export function doubleRuns(ledger: Ledger, cases: Map<string, FuzzCase>): Violation[] {
  return ledger.twice().map(([logical, ids]) => {
    const first = cases.get(ids[0] as string) as FuzzCase;
    return {
      cause: 'the handler ran more than once for one key + scope',
      case: first,
      detail: `${Buffer.from(logical, 'base64url').toString()} ran ${ids.length}×: ${ids.join(', ')}`,
    };
  });
}

/** A readable report: violations grouped by cause, then by family/variant, with example cases. */
export function report(name: string, seed: number, sent: number, violations: Violation[]): string {
  const lines = [
    `[fuzz ${name}] seed 0x${seed.toString(16)} (replay: IDEM_FUZZ_SEED=0x${seed.toString(16)}), ${sent} requests, ${violations.length} violations`,
  ];
  const byCause = new Map<string, Violation[]>();
  for (const v of violations) byCause.set(v.cause, [...(byCause.get(v.cause) ?? []), v]);
  for (const [cause, list] of [...byCause].sort((a, b) => b[1].length - a[1].length)) {
    lines.push(`  ${list.length}× ${cause}`);
    const byKind = new Map<string, Violation[]>();
    for (const v of list) {
      const kind = `${v.case.family}:${v.case.variant}${v.case.viaFetch ? ' (fetch)' : ''}`;
      byKind.set(kind, [...(byKind.get(kind) ?? []), v]);
    }
    for (const [kind, vs] of [...byKind].sort((a, b) => b[1].length - a[1].length)) {
      const e = vs[0] as Violation;
      lines.push(`      ${vs.length}× ${kind}  e.g. case ${e.case.id}: ${e.detail.slice(0, 160)}`);
    }
  }
  return lines.join('\n');
}

/** Collects unhandled rejections and uncaught exceptions while the slice runs. */
export function probeUnhandled() {
  const seen: string[] = [];
  const onRejection = (e: unknown) => seen.push(`unhandledRejection: ${String((e as Error)?.stack ?? e)}`);
  const onException = (e: unknown) => seen.push(`uncaughtException: ${String((e as Error)?.stack ?? e)}`);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    seen,
    stop() {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}

/**
 * Samples the process's resident set every 100 ms while a slice runs, so a leak under hostile
 * input shows as growth: `stop()` answers the start, peak and end in MiB.
 */
export function sampleRss() {
  const mib = () => process.memoryUsage().rss / 1048576;
  const start = mib();
  let peak = start;
  const timer = setInterval(() => (peak = Math.max(peak, mib())), 100);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      const end = mib();
      peak = Math.max(peak, end);
      return {
        start,
        peak,
        end,
        text: `RSS ${start.toFixed(0)} → peak ${peak.toFixed(0)} → ${end.toFixed(0)} MiB`,
      };
    },
  };
}

/** Generous per-slice timeout: 120 s, or 8 ms a request for the full run. */
export const sliceTimeout = (requests: number) => Math.max(120_000, requests * 8);

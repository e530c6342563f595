/**
 * The duplicate storm of the gateway section (issue 12): 1,000 concurrent requests with one
 * key over the 3 workers of one `idem serve --workers 3` (shared store), the upstream taking
 * 300 ms. Counts upstream calls per storm and measures the waiters' latency next to the same
 * 1,000 concurrent requests sent to the upstream directly (what the machine itself adds).
 *
 * @module
 */
import http from 'node:http';
import { summarize } from './measure.ts';
import { type Check, fmtUs, type Table } from './report.ts';

/** Concurrent requests of one storm. */
export const STORM_REQUESTS = 1000;
/** Gateway processes the storm is spread over. */
export const STORM_WORKERS = 3;
/** What one payment takes in the storm's upstream. */
export const STORM_UPSTREAM_MS = 300;

/** One store's storms. */
export interface StormRow {
  store: string;
  storms: number;
  /** Upstream calls per storm: min and max. */
  minCalls: number;
  maxCalls: number;
  answered: number;
  /** Answers that were not 201 or differed from their storm's first body. */
  wrong: number;
  /** The statuses of the wrong answers, `status×count`. */
  wrongStatuses: Record<string, number>;
  waiterP50Us: number;
  waiterP99Us: number;
  directP99Us: number;
}

interface Target {
  url: string;
  executions: () => Promise<number>;
}

const HEADERS = { 'content-type': 'application/json', authorization: 'Bearer bench-caller-1' };
const BODY = JSON.stringify({ claimId: 'CLAIM-STORM', amount: 10, currency: 'EUR' });

/** `n` kept-alive connections, opened first so a storm measures requests, not handshakes. */
async function connections(url: string, n: number): Promise<http.Agent> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: n });
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve, reject) => {
          http
            .get(`${url}/healthz`, { agent }, (res) => {
              res.resume();
              res.on('end', resolve);
            })
            .on('error', reject);
        }),
    ),
  );
  return agent;
}

function post(agent: http.Agent, url: string, key: string | undefined) {
  const started = performance.now();
  return new Promise<{ status: number; body: string; replayed: boolean; us: number }>((resolve, reject) => {
    const req = http.request(
      `${url}/payments`,
      { method: 'POST', agent, headers: key ? { ...HEADERS, 'idempotency-key': key } : HEADERS },
      (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            replayed: res.headers['idempotent-replayed'] === 'true',
            us: (performance.now() - started) * 1000,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(BODY);
  });
}

/** `storms` storms through `gateway` (a warm-up storm first), and the direct baseline against `upstream`. */
export async function runStorms(
  store: string,
  gateway: Target,
  upstream: Target,
  storms: number,
  run: string,
): Promise<StormRow> {
  const direct = await connections(upstream.url, STORM_REQUESTS);
  const directUs: number[] = [];
  try {
    for (let i = 0; i < storms; i++) {
      const replies = await Promise.all(
        Array.from({ length: STORM_REQUESTS }, () => post(direct, upstream.url, undefined)),
      );
      directUs.push(...replies.map((r) => r.us));
    }
  } finally {
    direct.destroy();
  }
  const agent = await connections(gateway.url, STORM_REQUESTS);
  const row: StormRow = {
    store,
    storms,
    minCalls: Number.POSITIVE_INFINITY,
    maxCalls: 0,
    answered: 0,
    wrong: 0,
    wrongStatuses: {},
    waiterP50Us: 0,
    waiterP99Us: 0,
    directP99Us: summarize(directUs).p99Us,
  };
  const waiters: number[] = [];
  try {
    for (let i = -1; i < storms; i++) {
      const before = await upstream.executions();
      const key = `storm-${run}-${store}-${i}`;
      const replies = await Promise.all(
        Array.from({ length: STORM_REQUESTS }, () => post(agent, gateway.url, key)),
      );
      const calls = (await upstream.executions()) - before;
      if (i < 0) continue; // warm-up
      row.minCalls = Math.min(row.minCalls, calls);
      row.maxCalls = Math.max(row.maxCalls, calls);
      row.answered += replies.length;
      const first = replies[0]?.body;
      for (const r of replies.filter((r) => r.status !== 201 || r.body !== first)) {
        row.wrong++;
        const what = r.status === 201 ? '201 (another body)' : `${r.status} ${problemType(r.body)}`;
        row.wrongStatuses[what] = (row.wrongStatuses[what] ?? 0) + 1;
      }
      waiters.push(...replies.filter((r) => r.replayed).map((r) => r.us));
    }
  } finally {
    agent.destroy();
  }
  const { p50Us, p99Us } = summarize(waiters);
  row.waiterP50Us = p50Us;
  row.waiterP99Us = p99Us;
  return row;
}

export function stormTable(rows: StormRow[]): Table {
  return {
    title: `Duplicate storm: ${STORM_REQUESTS} concurrent requests with one key over ${STORM_WORKERS} gateway workers, upstream takes ${STORM_UPSTREAM_MS} ms`,
    columns: [
      'store',
      'storms',
      'upstream calls/storm',
      'answers (wrong)',
      'waiter p50',
      'waiter p99',
      'waiter p99 − upstream',
      `upstream directly, ${STORM_REQUESTS} at once: p99`,
    ],
    rows: rows.map((r) => [
      r.store,
      String(r.storms),
      r.minCalls === r.maxCalls ? String(r.minCalls) : `${r.minCalls}–${r.maxCalls}`,
      `${r.answered} (${r.wrong}${r.wrong ? `: ${wrongList(r)}` : ''})`,
      fmtUs(r.waiterP50Us),
      fmtUs(r.waiterP99Us),
      fmtUs(r.waiterP99Us - STORM_UPSTREAM_MS * 1000),
      fmtUs(r.directP99Us),
    ]),
  };
}

export function stormChecks(rows: StormRow[]): Check[] {
  return rows.flatMap((r) => [
    {
      target: `${r.store}: duplicate storm → exactly one upstream call, every answer the same 201`,
      actual: `${r.minCalls === r.maxCalls ? r.minCalls : `${r.minCalls}–${r.maxCalls}`} calls per storm; ${r.wrong} wrong of ${r.answered}${r.wrong ? ` (${wrongList(r)})` : ''}`,
      met: r.minCalls === 1 && r.maxCalls === 1 && r.wrong === 0,
    },
    {
      target: `${r.store}: duplicate storm waiters' p99 ≤ upstream latency + 50 ms`,
      actual: `${fmtUs(r.waiterP99Us)} vs ${STORM_UPSTREAM_MS} ms + 50 ms (the upstream directly, ${STORM_REQUESTS} at once: p99 ${fmtUs(r.directP99Us)})`,
      met: r.waiterP99Us <= (STORM_UPSTREAM_MS + 50) * 1000,
    },
  ]);
}

const wrongList = (r: StormRow) =>
  Object.entries(r.wrongStatuses)
    .map(([what, n]) => `${what} ×${n}`)
    .join(', ');

/** The `type` of a problem+json body, or ''. */
function problemType(body: string): string {
  try {
    const type = (JSON.parse(body) as { type?: unknown }).type;
    return typeof type === 'string' ? type.slice(type.lastIndexOf('/') + 1) : '';
  } catch {
    return '';
  }
}

/**
 * Issue 4 §5: the gateway (`idem serve`) under load, with autocannon on loopback, next to the
 * upstream alone and to the same proxy without idempotency, on the SQLite, Postgres and Redis
 * stores.
 *
 * ```
 * autocannon ──▶ upstream (demo service, 5 ms per payment)                     upstream directly
 * autocannon ──▶ gateway, no key: pass-through route ──▶ upstream              bare proxy
 * autocannon ──▶ gateway, a new Idempotency-Key per request ──▶ store + upstream   new key
 * autocannon ──▶ gateway, one of 200 completed keys ──▶ store only             replay
 * ```
 *
 * The upstream and each gateway run in their own child process (bench/lib/gateway-child.ts);
 * the load generator runs here. All cases of one connection count run interleaved: equal
 * slices, order rotated every round, like bench/lib/measure.ts.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import type { RunConfig } from '../lib/config.ts';
import { installedVersion, loadAverage, reachable, SERVICES, sourceExists } from '../lib/env.ts';
import { type Child, deletePrefix, dropSchema, quiesce, startChild } from '../lib/gateway-procs.ts';
import {
  runStorms,
  STORM_UPSTREAM_MS,
  STORM_WORKERS,
  type StormRow,
  stormChecks,
  stormTable,
} from '../lib/gateway-storm.ts';
import { summarize } from '../lib/measure.ts';
import { type Check, emptySection, fmtOps, fmtUs, type SectionResult, type Table } from '../lib/report.ts';

/** What one payment takes in the upstream: a service that does real work, not an echo. */
const DELAY_MS = 5;
/** Concurrent connections of the load generator: light load (latency), heavy load (throughput). */
const CONNECTIONS = [8, 64] as const;
/** Gateway processes per gateway, as `idem serve` starts by default: one per core. */
const WORKERS = availableParallelism();
/** Completed keys the replay case cycles through. */
const REPLAY_KEYS = 200;
const BODY = JSON.stringify({ claimId: 'CLAIM-12345', amount: 1240.55, currency: 'EUR' });
/** A caller with credentials: the gateway scopes keys by them (and does not warn about anonymous callers). */
const HEADERS = { 'content-type': 'application/json', authorization: 'Bearer bench-caller-1' };

type Kind = 'upstream' | 'proxy' | 'new' | 'replay';

interface LoadCase {
  name: string;
  store: string;
  kind: Kind;
  url: string;
  /** The process whose CPU is charged to this case (the gateway, or the upstream when direct). */
  server: Child;
  /** The header set per request, and its value for request number `n`. */
  header: string;
  value: (n: number) => string;
}

/** The upstream and the gateways, for their counters. */
interface Procs {
  upstream: Child;
  gateways: Child[];
}

interface Tally {
  next: number;
  ok: number;
  /** Requests autocannon wrote (the last of each connection is cut off when a slice stops). */
  sent: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  samplesUs: number[];
  upstreamCalls: number;
  serverCpuUs: number;
  storeUs: number;
}

interface Row {
  c: LoadCase;
  connections: number;
  rps: number;
  p50Us: number;
  p99Us: number;
  ok: number;
  sent: number;
  errors: number;
  firstError?: string | undefined;
  upstreamCalls: number;
  cpuUsPerReq: number;
  storeUsPerReq: number;
}

export async function gatewaySection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('gateway', 'HTTP gateway: idem serve vs the upstream alone (issue 4)');
  const started = new Date().toISOString();
  const loadAtStart = loadAverage();
  const run = `${process.pid}_${randomBytes(3).toString('hex')}`;
  const children: Child[] = [];
  const cleanups: (() => Promise<string>)[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'idem-bench-gw-'));
  try {
    const upstream = await startChild(['upstream', String(DELAY_MS)]);
    children.push(upstream);

    // the stores: SQLite always, Postgres and Redis when reachable
    const specs: { store: string; spec: string }[] = [
      { store: 'sqlite', spec: `sqlite:${join(dir, 'gw.db')}` },
    ];
    const skipped: string[] = [];
    const schema = `idem_bench_gw_${run}`;
    if (!sourceExists('src/stores/postgres/index.ts'))
      skipped.push('postgres: src/stores/postgres does not exist');
    else if (!(await reachable(SERVICES.postgres)))
      skipped.push(`postgres: not reachable at ${SERVICES.postgres}`);
    else {
      const u = new URL(SERVICES.postgres);
      u.searchParams.set('schema', schema);
      specs.push({ store: 'postgres', spec: u.toString() });
      cleanups.push(() => dropSchema(schema));
    }
    const prefix = `idem_bench_gw_${run}`;
    if (!sourceExists('src/stores/redis/index.ts')) skipped.push('redis: src/stores/redis does not exist');
    else if (!(await reachable(SERVICES.redis))) skipped.push(`redis: not reachable at ${SERVICES.redis}`);
    else {
      const u = new URL(SERVICES.redis);
      u.searchParams.set('prefix', prefix);
      specs.push({ store: 'redis', spec: u.toString() });
      cleanups.push(() => deletePrefix(prefix));
    }
    for (const reason of skipped) console.log(`  skipped: ${reason}`);

    const gateways: { store: string; gw: Child }[] = [];
    let responseBytes = 0;
    for (const { store, spec } of specs) {
      const gw = await startChild(['gateway', upstream.url, spec, String(WORKERS)]);
      children.push(gw);
      gateways.push({ store, gw });
      responseBytes = await prepare(gw.url, store, run);
    }

    const counter = (n: number) => String(n);
    let fresh = 0; // one sequence for every new-key case, so no key repeats
    const cases: LoadCase[] = [
      {
        name: 'upstream directly',
        store: '—',
        kind: 'upstream',
        url: upstream.url,
        server: upstream,
        header: 'x-request-seq',
        value: counter,
      },
      {
        name: 'gateway, no key (pass-through: the same proxy without idem)',
        store: '—',
        kind: 'proxy',
        url: gateways[0]!.gw.url,
        server: gateways[0]!.gw,
        header: 'x-request-seq',
        value: counter,
      },
    ];
    for (const { store, gw } of gateways) {
      cases.push(
        {
          name: 'gateway, new key per request',
          store,
          kind: 'new',
          url: gw.url,
          server: gw,
          header: 'idempotency-key',
          value: () => `new-${run}-${fresh++}`,
        },
        {
          name: `gateway, replay (${REPLAY_KEYS} completed keys)`,
          store,
          kind: 'replay',
          url: gw.url,
          server: gw,
          header: 'idempotency-key',
          value: (n) => replayKey(run, n % REPLAY_KEYS),
        },
      );
    }

    const rows: Row[] = [];
    const procs = { upstream, gateways: gateways.map((g) => g.gw) };
    for (const connections of CONNECTIONS) rows.push(...(await measureLoad(cases, connections, procs, cfg)));
    await Promise.all(gateways.map((g) => g.gw.close()));

    // the duplicate storm: its own slow upstream, and per store a gateway of 3 workers
    const slow = await startChild(['upstream', String(STORM_UPSTREAM_MS)]);
    children.push(slow);
    const storms: StormRow[] = [];
    for (const { store, spec } of specs) {
      const gw = await startChild(['gateway', slow.url, spec, String(STORM_WORKERS)]);
      children.push(gw);
      const executions = async () => (await slow.stats()).executions;
      storms.push(
        await runStorms(
          store,
          { url: gw.url, executions },
          { url: slow.url, executions },
          cfg.quick ? 1 : 3,
          run,
        ),
      );
      await gw.close();
    }

    s.facts.push(
      `this section ran at ${started}; load average at start ${loadAtStart}, at end ${loadAverage()}`,
      `upstream: the demo service (src/cli/demo-service.ts), \`POST /payments\` answers 201 with a ${responseBytes}-byte JSON payment after ${DELAY_MS} ms; request: a ${Buffer.byteLength(BODY)}-byte JSON body with \`Authorization\` (the gateway scopes keys by it)`,
      `each gateway: \`createGateway({ upstream, store, purgeEvery: false })\` (the defaults of \`idem serve\`: one catch-all route, key optional, concurrency wait) in ${WORKERS} worker processes (one per core, as \`idem serve\` starts them by default: node:cluster, src/gateway/cluster.ts) plus their primary; the upstream in another process; autocannon ${installedVersion('autocannon')} in the benchmark process; all on loopback, sharing the machine with the store servers`,
      `stores: SQLite (temp file, WAL)${specs.some((x) => x.store === 'postgres') ? `; Postgres at ${new URL(SERVICES.postgres).host} (schema ${schema}; the store's default pool of 10 connections)` : ''}${specs.some((x) => x.store === 'redis') ? `; Redis at ${new URL(SERVICES.redis).host} (prefix ${prefix})` : ''}`,
      ...skipped.map((r) => `skipped: ${r}`),
      `each case: ${cfg.warmupMs} ms warm-up, then ${cfg.durationMs} ms in ${cfg.rounds} slices interleaved with the other cases of its connection count (order rotated each round); latency per request from autocannon's response events`,
    );
    s.tables.push(loadTable(rows), cpuTable(rows), stormTable(storms));
    s.checks.push(...targetChecks(rows), ...correctnessChecks(rows), ...stormChecks(storms));
    s.notes.push(
      '`req/s vs upstream`: requests per second ÷ those of the upstream directly at the same connection count. `p50 vs bare proxy`: p50 ÷ the p50 of the pass-through row.',
      '`upstream calls/request`: payments the upstream executed during the case ÷ requests autocannon sent (a request cut off when a slice stops still reaches the upstream; a replay must be 0).',
      `\`server CPU/req\`: CPU time of all the gateway's processes (its ${WORKERS} workers and their primary) per response (of the upstream process for the direct row); the load generator, the upstream and the store servers are not included.`,
      `duplicate storm: per store, \`idem serve --workers ${STORM_WORKERS}\` in front of the demo service taking ${STORM_UPSTREAM_MS} ms; ${cfg.quick ? 1 : 3} storm(s) after a warm-up storm, each ${'1,000'} concurrent POSTs with one fresh key over kept-alive connections (round-robin over the workers); waiters: the answers marked replayed. The same 1,000 requests sent to the upstream directly, without a key, show what the machine itself adds.`,
      "`store time/req`: time the gateway's store calls took per response (claim and complete for a new key, claim for a replay), from its `idem_store_operation_duration_seconds` histogram, so waiting for a pool connection or for the event loop counts too.",
    );
    return s;
  } finally {
    await Promise.all(children.map((c) => c.close().catch(() => {})));
    for (const cleanup of cleanups) s.notes.push(`cleanup: ${await cleanup().catch((e) => `failed: ${e}`)}`);
    rmSync(dir, { recursive: true, force: true });
  }
}

const replayKey = (run: string, i: number) => `replay-${run}-${i}`;

/**
 * Completes the replay keys on one gateway and checks that the paths answer as expected;
 * answers the size of a response body.
 */
async function prepare(url: string, store: string, run: string): Promise<number> {
  const post = (key?: string) =>
    fetch(`${url}/payments`, {
      method: 'POST',
      headers: key ? { ...HEADERS, 'idempotency-key': key } : HEADERS,
      body: BODY,
    });
  for (let i = 0; i < REPLAY_KEYS; i++) {
    const r = await post(replayKey(run, i));
    await r.arrayBuffer();
    if (r.status !== 201 || r.headers.get('idempotent-replayed')) {
      throw new Error(
        `${store}: preparing replay key ${i}: status ${r.status}, replayed ${r.headers.get('idempotent-replayed')}`,
      );
    }
  }
  const replay = await post(replayKey(run, 0));
  const bare = await post();
  const [body] = await Promise.all([replay.arrayBuffer(), bare.arrayBuffer()]);
  if (replay.status !== 201 || replay.headers.get('idempotent-replayed') !== 'true') {
    throw new Error(`${store}: a completed key was not replayed (status ${replay.status})`);
  }
  if (bare.status !== 201 || bare.headers.get('idempotent-replayed') !== null) {
    throw new Error(`${store}: a request without a key did not pass through (status ${bare.status})`);
  }
  return body.byteLength;
}

/** Every case at one connection count, interleaved; one row per case. */
async function measureLoad(cases: LoadCase[], connections: number, procs: Procs, cfg: RunConfig) {
  const tallies = cases.map(
    (): Tally => ({
      next: 0,
      ok: 0,
      sent: 0,
      errors: 0,
      elapsedMs: 0,
      samplesUs: [],
      upstreamCalls: 0,
      serverCpuUs: 0,
      storeUs: 0,
    }),
  );
  for (const [k, c] of cases.entries()) await slice(c, connections, cfg.warmupMs, tallies[k]!, procs, false);
  const ms = cfg.durationMs / cfg.rounds;
  for (let r = 0; r < cfg.rounds; r++) {
    for (let j = 0; j < cases.length; j++) {
      const k = (j + r) % cases.length;
      await slice(cases[k]!, connections, ms, tallies[k]!, procs, true);
    }
  }
  return cases.map((c, k): Row => {
    const t = tallies[k]!;
    const { p50Us, p99Us } = summarize(t.samplesUs);
    return {
      c,
      connections,
      rps: t.ok / (t.elapsedMs / 1000),
      p50Us,
      p99Us,
      ok: t.ok,
      sent: t.sent,
      errors: t.errors,
      firstError: t.firstError,
      upstreamCalls: t.upstreamCalls,
      cpuUsPerReq: t.serverCpuUs / t.ok,
      storeUsPerReq: t.storeUs / t.ok,
    };
  });
}

/** One autocannon run of `c` for `ms`, added to `tally` when `record`. */
async function slice(
  c: LoadCase,
  connections: number,
  ms: number,
  t: Tally,
  { upstream, gateways }: Procs,
  record: boolean,
) {
  const before = await upstream.stats();
  const serverBefore = c.server === upstream ? before : await c.server.stats();
  const t0 = performance.now();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: c.url,
        connections,
        duration: ms / 1000,
        sampleInt: 100, // autocannon stops at the first sample tick after `duration`
        requests: [
          {
            method: 'POST',
            path: '/payments',
            headers: HEADERS,
            body: BODY,
            setupRequest: (req) => {
              req.headers = { ...req.headers, [c.header]: c.value(t.next++) };
              return req;
            },
          },
        ],
      },
      (error, r) => (error ? reject(error) : resolve(r)),
    );
    if (record) {
      instance.on('response', (_client, status, _bytes, responseMs) => {
        if (status >= 200 && status < 300) {
          t.ok++;
          t.samplesUs.push(responseMs * 1000);
        }
      });
    }
  });
  const elapsed = performance.now() - t0;
  const after = await quiesce(upstream, gateways);
  const serverAfter = c.server === upstream ? after : await c.server.stats();
  if (!record) return;
  t.elapsedMs += elapsed;
  t.sent += result.requests.sent;
  t.upstreamCalls += after.executions - before.executions;
  t.serverCpuUs += serverAfter.cpuUs - serverBefore.cpuUs;
  t.storeUs += serverAfter.storeUs - serverBefore.storeUs;
  const errors = result.errors + result.timeouts + result.non2xx;
  t.errors += errors;
  if (errors && !t.firstError) t.firstError = JSON.stringify(result.statusCodeStats);
}

function find(rows: Row[], connections: number, kind: Kind, store?: string) {
  return rows.find(
    (r) => r.connections === connections && r.c.kind === kind && (!store || r.c.store === store),
  );
}

const ratio = (a: number, b: number | undefined) =>
  b === undefined || !Number.isFinite(a / b) ? '—' : `${(a / b).toFixed(2)}×`;

function loadTable(rows: Row[]): Table {
  return {
    title: `Requests per second and latency, POST /payments, upstream takes ${DELAY_MS} ms`,
    columns: [
      'connections',
      'implementation',
      'store',
      'req/s',
      'p50',
      'p99',
      'req/s vs upstream',
      'p50 vs bare proxy',
      'upstream calls/request',
      'server CPU/req',
      'store time/req',
      'errors',
    ],
    rows: rows.map((r) => {
      const up = find(rows, r.connections, 'upstream');
      const proxy = find(rows, r.connections, 'proxy');
      return [
        String(r.connections),
        r.c.name,
        r.c.store,
        fmtOps(r.rps),
        fmtUs(r.p50Us),
        fmtUs(r.p99Us),
        r.c.kind === 'upstream' ? '—' : ratio(r.rps, up?.rps),
        r.c.kind === 'proxy' ? '—' : ratio(r.p50Us, proxy?.p50Us),
        r.sent ? (r.upstreamCalls / r.sent).toFixed(3) : 'n/a',
        fmtUs(r.cpuUsPerReq),
        r.c.kind === 'new' || r.c.kind === 'replay' ? fmtUs(r.storeUsPerReq) : '—',
        r.errors ? `${r.errors} ✗ ${r.firstError ?? ''}` : '0',
      ];
    }),
  };
}

/** Gateway CPU per request (all its processes), new key and replay, next to the bare proxy's. */
function cpuTable(rows: Row[]): Table {
  const out: string[][] = [];
  for (const connections of CONNECTIONS) {
    const proxy = find(rows, connections, 'proxy');
    const up = find(rows, connections, 'upstream');
    for (const store of [...new Set(rows.filter((r) => r.c.kind === 'new').map((r) => r.c.store))]) {
      const fresh = find(rows, connections, 'new', store);
      const replay = find(rows, connections, 'replay', store);
      out.push([
        String(connections),
        store,
        fmtUs(proxy?.cpuUsPerReq ?? Number.NaN),
        fresh ? `${fmtUs(fresh.cpuUsPerReq)} (${ratio(fresh.cpuUsPerReq, proxy?.cpuUsPerReq)})` : '—',
        replay ? `${fmtUs(replay.cpuUsPerReq)} (${ratio(replay.cpuUsPerReq, proxy?.cpuUsPerReq)})` : '—',
        fmtUs(up?.cpuUsPerReq ?? Number.NaN),
      ]);
    }
  }
  return {
    title: `Gateway CPU per request: the CPU time of all its processes (${WORKERS} workers and their primary) ÷ responses`,
    columns: [
      'connections',
      'store',
      'bare proxy (no key)',
      'new key (vs bare proxy)',
      'replay (vs bare proxy)',
      'upstream process, called directly',
    ],
    rows: out,
  };
}

/** The targets of issue 4 §5 and issue 12 (the same, with workers), per store and connection count. */
function targetChecks(rows: Row[]): Check[] {
  const checks: Check[] = [];
  for (const r of rows) {
    const up = find(rows, r.connections, 'upstream');
    const proxy = find(rows, r.connections, 'proxy');
    const at = `${r.c.store}, ${r.connections} connections`;
    if (r.c.kind === 'replay' && up) {
      checks.push({
        target: `${at}: replay faster than the upstream directly (more req/s and a lower p50)`,
        actual: `${fmtOps(r.rps)} vs ${fmtOps(up.rps)} req/s (${ratio(r.rps, up.rps)}); p50 ${fmtUs(r.p50Us)} vs ${fmtUs(up.p50Us)}`,
        met: r.rps > up.rps && r.p50Us < up.p50Us,
      });
    }
    if (r.c.kind === 'new' && proxy) {
      checks.push({
        target: `${at}: new key p50 ≤ 1.5× the bare proxy's`,
        actual: `${fmtUs(r.p50Us)} vs ${fmtUs(proxy.p50Us)} (${ratio(r.p50Us, proxy.p50Us)})`,
        met: r.p50Us <= 1.5 * proxy.p50Us,
      });
    }
  }
  return checks;
}

/** Replays never reach the upstream; each new key reaches it once; no errors anywhere. */
function correctnessChecks(rows: Row[]): Check[] {
  const replays = rows.filter((r) => r.c.kind === 'replay');
  const fresh = rows.filter((r) => r.c.kind === 'new');
  const replayCalls = replays.reduce((n, r) => n + r.upstreamCalls, 0);
  const replayed = replays.reduce((n, r) => n + r.ok, 0);
  // a request cut off when a slice stops may or may not have reached the upstream
  const freshOk = fresh.every((r) => r.upstreamCalls >= r.ok && r.upstreamCalls <= r.sent);
  const errors = rows.reduce((n, r) => n + r.errors, 0);
  return [
    {
      target: 'replays never reach the upstream',
      actual: `${replayCalls} upstream calls during ${fmtOps(replayed)} replays`,
      met: replayCalls === 0,
    },
    {
      target: 'each new key reaches the upstream once: responses ≤ upstream calls ≤ requests sent',
      actual: fresh
        .map((r) => `${r.c.store} ×${r.connections}: ${r.ok} ≤ ${r.upstreamCalls} ≤ ${r.sent}`)
        .join('; '),
      met: fresh.length ? freshOk : undefined,
    },
    { target: 'no errors or non-2xx answers', actual: `${errors}`, met: errors === 0 },
  ];
}

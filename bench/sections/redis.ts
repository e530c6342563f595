/**
 * Issue 3: `idem.run` on the Redis store next to raw clients doing the minimal SET NX PX + SET
 * pair, and next to two peers on the same Redis doing the same work:
 * `@aws-lambda-powertools/idempotency` (CachePersistenceLayer on @redis/client, driven by
 * `makeIdempotent` outside Lambda) and `@node-idempotency/core` (its Redis adapter, which
 * brings its own redis@4 client). Fresh key and replay at 1, 4, 16 and 64 concurrent callers,
 * each implementation in a Node process of its own (./redis-cases.ts, bench/lib/isolated.ts); a
 * 100-way duplicate burst and round trips counted with MONITOR, in this process.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RedisStorageAdapter } from '@node-idempotency/storage-adapter-redis';
import { createClient } from '@redis/client';
import { createIdem } from 'idem';
import { Redis } from 'ioredis';
import { type BurstCase, burst, burstTable } from '../lib/burst.ts';
import { lineChart } from '../lib/chart.ts';
import type { RunConfig } from '../lib/config.ts';
import { installedVersion, ROOT, reachable, SERVICES, sourceExists } from '../lib/env.ts';
import { type Isolated, startIsolated } from '../lib/isolated.ts';
import { type Case, type CaseResult, measure, ratioOf } from '../lib/measure.ts';
import { unlinkMatching } from '../lib/redis-keys.ts';
import {
  emptySection,
  fmtOps,
  fmtPct,
  type SectionResult,
  type Table,
  throughputTable,
} from '../lib/report.ts';
import { type Counts, perOp, redisMonitor, roundTripChecks } from '../lib/roundtrips.ts';
import { API, LEASE_MS, send, TTL_MS } from '../lib/workload.ts';
import { nodeIdempotency, powertools, type RedisImpl } from './redis-cases.ts';

const BURST_CALLERS = 100;
const IDEM = 'idem.run, redisStore (ioredis)';
const PT = 'powertools makeIdempotent, CachePersistenceLayer (@redis/client)';
const NI = '@node-idempotency/core, Redis adapter (redis@4)';
const RAW_IO = 'raw ioredis';
const RAW_NR = 'raw @redis/client';
const RAW_R4 = 'raw redis@4 via the adapter';

export async function redisSection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('redis', 'Redis store vs raw clients and peers (issue 3)');
  if (!sourceExists('src/stores/redis/index.ts')) {
    s.skipped = 'src/stores/redis/index.ts does not exist yet';
    return s;
  }
  if (!(await reachable(SERVICES.redis))) {
    s.skipped = `redis is not reachable at ${SERVICES.redis}`;
    return s;
  }
  const { redisStore } = await import('idem/redis');
  const { SCRIPTS } = await import('../../src/stores/redis/lua.generated.ts');

  const prefix = `idem_bench_${process.pid}_${randomBytes(3).toString('hex')}`;
  const url = SERVICES.redis;
  const storeClient = new Redis(url);
  const rawClient = new Redis(url);
  const ptClient = createClient({ url });
  ptClient.on('error', () => {});
  await ptClient.connect();
  const adapter = new RedisStorageAdapter({ url });
  await adapter.connect();
  const store = redisStore({ client: storeClient, prefix: `${prefix}_idem_rt` });
  const kids: Isolated[] = [];
  let cleaned = 0;
  const statsBefore = await commandStats(rawClient);
  try {
    // the throughput cases: each implementation in a process of its own (bench/lib/isolated.ts)
    const child = new URL('./redis-cases.ts', import.meta.url);
    const impls = new Map<RedisImpl, Isolated>();
    for (const impl of ['raw-io', 'raw-nr', 'raw-r4', 'api', 'idem', 'pt', 'ni'] as const) {
      const kid = await startIsolated(child, 'redisCase', { impl, prefix, url });
      kids.push(kid);
      impls.set(impl, kid);
    }
    const kid = (impl: RedisImpl) => impls.get(impl)!;
    const cases = (op: 'fresh' | 'replay'): Case[] => {
      const raw = op === 'fresh' ? 'SET NX PX + SET' : 'GET';
      return [
        kid('raw-io').case(op, { name: RAW_IO, note: raw }),
        kid('raw-nr').case(op, { name: RAW_NR, note: raw }),
        kid('raw-r4').case(op, { name: RAW_R4, note: raw }),
        kid('api').case(op, {
          name: API,
          note: op === 'fresh' ? 'claim + complete' : 'claim',
          baseline: RAW_IO,
        }),
        kid('idem').case(op, { name: IDEM, baseline: RAW_IO }),
        kid('pt').case(op, { name: PT, baseline: RAW_NR }),
        kid('ni').case(op, { name: NI, baseline: RAW_R4 }),
      ];
    };
    const results: Record<string, CaseResult[]> = {};
    for (const concurrency of [1, 16]) {
      const opts = { concurrency, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
      results[`fresh c${concurrency}`] = await measure(cases('fresh'), opts);
      results[`replay c${concurrency}`] = await measure(cases('replay'), opts);
    }

    const idem = createIdem({ store, ttl: TTL_MS, lease: LEASE_MS });
    const ptRun = powertools(ptClient, `${prefix}_pt_rt`, async (p: { k: string; n: number }) => send(p.n));
    const burstActions = new Map<string, () => Promise<unknown>>();
    const ptBurst = powertools(ptClient, `${prefix}_pt_rt`, async (p: { key: string }) =>
      burstActions.get(p.key)!(),
    );
    const niRun = nodeIdempotency(adapter, `${prefix}_ni_rt`);
    const niWait = nodeIdempotency(adapter, `${prefix}_ni_rt`, true);

    // 100 callers of one fresh key per burst
    const instances = Array.from({ length: BURST_CALLERS }, () =>
      createIdem({ store, ttl: TTL_MS, lease: LEASE_MS, onInProgress: 'wait' }),
    );
    const burstCases: BurstCase[] = [
      {
        name: 'idem.execute, redisStore',
        note: "onInProgress 'wait', 100 instances",
        call: (key, caller, action) => instances[caller]!.execute(key, action),
      },
      {
        name: 'powertools',
        note: 'no wait mode: duplicates are rejected',
        call: (key, _caller, action) => {
          burstActions.set(key, action);
          return ptBurst({ key });
        },
      },
      {
        name: '@node-idempotency/core',
        note: 'inProgressStrategy wait, polls every 100 ms',
        call: (key, _caller, action) => niWait(key, 0, action),
      },
    ];
    const burstOpts = { callers: BURST_CALLERS, actionMs: 5, durationMs: cfg.burstMs, rounds: 2 };
    const bursts = await burst(burstCases, 'burst', burstOpts);

    // round trips: MONITOR, commands on keys of this run only
    const shaNames: Record<string, string> = {};
    for (const [name, sc] of Object.entries(SCRIPTS)) shaNames[sc.sha1] = name;
    const monitor = await redisMonitor(url, prefix, (text) => rawClient.echo(text), shaNames);
    const RT_OPS = 50;
    const rt: Record<string, { fresh: Counts; replay: Counts }> = {};
    const countRt = async (
      name: string,
      fresh: (i: number) => Promise<unknown>,
      again: (i: number) => Promise<unknown>,
    ) => {
      await monitor.take();
      for (let i = 0; i < RT_OPS; i++) await fresh(i);
      const f = await monitor.take();
      for (let i = 0; i < RT_OPS; i++) await again(i);
      rt[name] = { fresh: f, replay: await monitor.take() };
    };
    // throughput against concurrency for the chart: the same cases at 4 and 64 callers too
    // (raw ioredis and the three libraries only, to keep the section short)
    const charted = [RAW_IO, IDEM, PT, NI];
    for (const concurrency of [4, 64]) {
      const opts = { concurrency, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
      const only = (list: Case[]) => list.filter((c) => charted.includes(c.name));
      results[`fresh c${concurrency}`] = await measure(only(cases('fresh')), opts);
      results[`replay c${concurrency}`] = await measure(only(cases('replay')), opts);
    }
    let replayRuns = 0;
    for (const impl of ['idem', 'pt', 'ni'] as const) replayRuns += await kid(impl).actionRuns();
    const charts = writeCharts(results, charted, cfg.docs);
    s.notes.push(
      `Throughput against concurrency (1, 4, 16, 64 callers), idem next to the peers and raw ioredis: ${charts.join(', ')} (generated by this run).`,
    );

    const idemRt = (i: number) => idem.run(`rt:${i}`, () => send(i), { input: { n: i } });
    await countRt(IDEM, idemRt, idemRt);
    const ptRt = (i: number) => ptRun({ k: 'rt', n: i });
    await countRt(PT, ptRt, ptRt);
    const niRt = (i: number) => niRun(`rt:${i}`, i, () => send(i));
    await countRt(NI, niRt, niRt);
    monitor.close();

    const statsAfter = await commandStats(rawClient);
    const perCall = ['evalsha', 'set', 'get']
      .map((cmd) => {
        const a = statsAfter[cmd];
        const b = statsBefore[cmd] ?? { calls: 0, usec: 0 };
        return a && a.calls > b.calls
          ? `${cmd.toUpperCase()} ${((a.usec - b.usec) / (a.calls - b.calls)).toFixed(1)} µs`
          : '';
      })
      .filter(Boolean);
    s.notes.push(
      `Redis server time per call over this section (INFO commandstats deltas; the server is shared, so other clients' calls in the window count too): ${perCall.join(', ')}`,
    );
    const info = await rawClient.info('server');
    s.facts.push(
      `Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? '?'} at ${new URL(url).host}; ioredis ${installedVersion('ioredis')}, ` +
        `@redis/client ${installedVersion('@redis/client')}, @aws-lambda-powertools/idempotency ${installedVersion('@aws-lambda-powertools/idempotency')}, ` +
        `@node-idempotency/core ${installedVersion('@node-idempotency/core')} (+ storage-adapter-redis ${installedVersion('@node-idempotency/storage-adapter-redis')})`,
      'each implementation runs in a Node process of its own on its own connection (clients pipeline concurrent commands on it); this process interleaves their segments, one at a time, and each reports its own CPU per call; idem calls pass `input` (fingerprinted), powertools hashes the payload (md5) as key, node-idempotency fingerprints the body (blake2s)',
      'redisStore holds its socket writes to the end of each tick (cork), so commands of concurrent calls leave in one write (@redis/client, powertools’ client, batches a whole event-loop turn by default); raw ioredis writes each command on its own (ioredis `enableAutoPipelining` is off, as by default)',
    );
    for (const w of ['fresh', 'replay']) {
      const rows: string[][] = [];
      for (const c of [1, 16]) rows.push(...throughputTable('', results[`${w} c${c}`]!).rows);
      s.tables.push({
        title: w === 'fresh' ? 'Fresh key: claim, run, complete' : 'Replay of a completed key',
        columns: throughputTable('', []).columns,
        rows,
      });
    }
    s.tables.push(peersTable(results));
    s.tables.push(
      burstTable(
        `Duplicate burst: ${BURST_CALLERS} concurrent calls of one fresh key, action takes ${burstOpts.actionMs} ms`,
        bursts,
        burstOpts,
      ),
    );
    s.tables.push({
      title: 'Round trips per call (MONITOR, commands on this run’s keys; Lua-internal calls excluded)',
      columns: ['implementation', 'fresh key', 'replay'],
      rows: Object.entries(rt).map(([name, r]) => [name, perOp(r.fresh, RT_OPS), perOp(r.replay, RT_OPS)]),
    });

    for (const key of ['fresh c1', 'fresh c16', 'replay c1', 'replay c16']) {
      const r = results[key]!;
      const mine = r.find((x) => x.name === IDEM)!;
      const ratio = ratioOf(mine, r);
      const label = key.replace(/ c(\d+)/, ', $1 caller(s)');
      s.checks.push({
        target: `${label}: redisStore ≥ 70 % of raw ioredis`,
        actual: fmtPct(ratio),
        met: ratio === undefined ? undefined : ratio >= 0.7,
      });
      // issue 12: ahead of both peers on fresh keys, 1.5× on replays (one Lua call against their two commands)
      const need = key.startsWith('fresh') ? 1 : 1.5;
      for (const [peer, short] of [
        [PT, 'powertools'],
        [NI, 'node-idempotency'],
      ] as const) {
        const p = r.find((x) => x.name === peer)!;
        const times = mine.opsPerSec / p.opsPerSec;
        s.checks.push({
          target: `${label}: idem ≥ ${need.toFixed(1)}× ${short}`,
          actual: `${times.toFixed(2)}×`,
          met: times >= need,
        });
      }
    }
    const idemRtCounts = rt[IDEM]!;
    s.checks.push(
      ...roundTripChecks(idemRtCounts.fresh, idemRtCounts.replay, RT_OPS, {
        claim: 'evalsha claim',
        complete: 'evalsha complete',
      }),
    );
    const b = bursts[0]!;
    s.checks.push({
      target: `duplicate burst: the action runs exactly once per key (${b.bursts} bursts)`,
      actual: `${b.minExec === b.maxExec ? b.minExec : `${b.minExec}–${b.maxExec}`} per burst`,
      met: b.minExec === 1 && b.maxExec === 1,
    });
    s.checks.push({
      target: 'replays never run the action',
      actual: `${replayRuns} runs during replay`,
      met: replayRuns === 0,
    });
    return s;
  } finally {
    await Promise.allSettled(kids.map((k) => k.close()));
    cleaned = await deletePrefix(rawClient, prefix).catch(() => -1);
    s.notes.push(`cleanup: deleted ${cleaned} keys under ${prefix}*`);
    await store.close?.();
    await adapter.disconnect();
    await Promise.allSettled([ptClient.quit()]);
    storeClient.disconnect();
    rawClient.disconnect();
  }
}

/** idem's throughput over each peer's, per workload. */
function peersTable(results: Record<string, CaseResult[]>): Table {
  const rows = Object.entries(results).map(([key, r]) => {
    const get = (n: string) => r.find((x) => x.name === n)!.opsPerSec;
    const [w, c] = key.split(' c');
    return [
      `${w}`,
      c!,
      fmtOps(get(IDEM)),
      fmtOps(get(PT)),
      `${(get(IDEM) / get(PT)).toFixed(2)}×`,
      fmtOps(get(NI)),
      `${(get(IDEM) / get(NI)).toFixed(2)}×`,
    ];
  });
  return {
    title: 'idem vs peers on the same Redis (ops/s)',
    columns: [
      'workload',
      'callers',
      'idem',
      'powertools',
      'idem ÷ powertools',
      'node-idempotency',
      'idem ÷ node-idempotency',
    ],
    rows,
  };
}

/** `INFO commandstats` as { command: { calls, usec } }. */
async function commandStats(client: Redis): Promise<Record<string, { calls: number; usec: number }>> {
  const out: Record<string, { calls: number; usec: number }> = {};
  for (const m of (await client.info('commandstats')).matchAll(/cmdstat_([a-z|]+):calls=(\d+),usec=(\d+)/g)) {
    out[m[1]!] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return out;
}

function deletePrefix(client: Redis, prefix: string): Promise<number> {
  return unlinkMatching(client, `${prefix}*`);
}

/** The two throughput-vs-concurrency charts, into bench/results/ (and docs/bench/ with --docs). */
function writeCharts(results: Record<string, CaseResult[]>, names: string[], docs: boolean): string[] {
  const written: string[] = [];
  for (const workload of ['fresh', 'replay'] as const) {
    const series = names.map((name) => ({
      name,
      points: [1, 4, 16, 64].flatMap((c): [number, number][] => {
        const r = results[`${workload} c${c}`]?.find((x) => x.name === name);
        return r && r.errors === 0 ? [[c, Math.round(r.opsPerSec)]] : [];
      }),
    }));
    const svg = lineChart({
      title: `Redis: ${workload === 'fresh' ? 'fresh keys (claim, run, complete)' : 'replays of completed keys'}`,
      xLabel: 'concurrent callers (one process)',
      yLabel: 'ops/s',
      series,
    });
    const file = `redis-${workload}.svg`;
    const dirs = [join(ROOT, 'bench/results'), ...(docs ? [join(ROOT, 'docs/bench')] : [])];
    for (const d of dirs) {
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, file), svg);
    }
    written.push(docs ? `[${file}](bench/${file})` : `bench/results/${file}`);
  }
  return written;
}

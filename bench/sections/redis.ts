/**
 * Issue 3: `idem.run` on the Redis store next to raw clients doing the minimal SET NX PX + SET
 * pair, and next to two peers on the same Redis doing the same work:
 * `@aws-lambda-powertools/idempotency` (CachePersistenceLayer on @redis/client, driven by
 * `makeIdempotent` outside Lambda) and `@node-idempotency/core` (its Redis adapter, which
 * brings its own redis@4 client). Fresh key and replay at 1 and 16 concurrent callers, a
 * 100-way duplicate burst, and round trips counted with MONITOR.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { CachePersistenceLayer } from '@aws-lambda-powertools/idempotency/cache';
import { Idempotency } from '@node-idempotency/core';
import { RedisStorageAdapter } from '@node-idempotency/storage-adapter-redis';
import { createClient } from '@redis/client';
import { createIdem } from 'idem';
import { Redis } from 'ioredis';
import { type BurstCase, burst, burstTable } from '../lib/burst.ts';
import { lineChart } from '../lib/chart.ts';
import type { RunConfig } from '../lib/config.ts';
import { installedVersion, ROOT, reachable, SERVICES, sourceExists } from '../lib/env.ts';
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
import {
  API,
  encodedOutcome,
  FINGERPRINT,
  LEASE_MS,
  REPLAY_KEYS,
  send,
  storeOnly,
  TTL_MS,
  token,
} from '../lib/workload.ts';

const BURST_CALLERS = 100;
const IDEM = 'idem.run, redisStore (ioredis)';
const PT = 'powertools makeIdempotent, CachePersistenceLayer (@redis/client)';
const NI = '@node-idempotency/core, Redis adapter (redis@4)';
const RAW_IO = 'raw ioredis';
const RAW_NR = 'raw @redis/client';
const RAW_R4 = 'raw redis@4 via the adapter';

type LambdaContext = Parameters<IdempotencyConfig['registerLambdaContext']>[0];

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
  const nodeRedis = createClient({ url });
  const ptClient = createClient({ url });
  for (const c of [nodeRedis, ptClient]) c.on('error', () => {});
  await Promise.all([nodeRedis.connect(), ptClient.connect()]);
  const adapter = new RedisStorageAdapter({ url });
  await adapter.connect();
  const store = redisStore({ client: storeClient, prefix: `${prefix}_idem` });
  let cleaned = 0;
  const statsBefore = await commandStats(rawClient);
  try {
    const idem = createIdem({ store, ttl: TTL_MS, lease: LEASE_MS });

    // powertools: the lease is the "remaining time" of a (stand-in) Lambda context
    const config = new IdempotencyConfig({ expiresAfterSeconds: TTL_MS / 1000 });
    config.registerLambdaContext({ getRemainingTimeInMillis: () => LEASE_MS } as unknown as LambdaContext);
    const persistenceStore = new CachePersistenceLayer({ client: ptClient });
    const ptOptions = { persistenceStore, config, keyPrefix: `${prefix}_pt` };
    const ptRun = makeIdempotent(async (p: { k: string; n: number }) => send(p.n), ptOptions);
    const burstActions = new Map<string, () => Promise<unknown>>();
    const ptBurst = makeIdempotent(async (p: { key: string }) => burstActions.get(p.key)!(), ptOptions);

    // node-idempotency: onRequest → action → onResponse, as its README shows
    const niOptions = { cacheKeyPrefix: `${prefix}_ni`, cacheTTLMS: TTL_MS };
    const ni = new Idempotency(adapter, niOptions);
    const niWait = new Idempotency(adapter, { ...niOptions, inProgressStrategy: { wait: true } });
    const niRun = async (lib: Idempotency, key: string, n: number, action: () => Promise<unknown>) => {
      const req = { method: 'POST', path: '/bench', headers: { 'idempotency-key': key }, body: { n } };
      const cached = await lib.onRequest(req);
      if (cached) return cached.body;
      const value = await action();
      await lib.onResponse(req, { body: value });
      return value;
    };

    // raw: SET NX PX (claim) + SET PX (complete); GET (replay)
    const inProgress = JSON.stringify({ s: 'p', f: FINGERPRINT, t: token(), a: 1, l: Date.now() });
    const outcome = encodedOutcome(123456);
    const raw = {
      io: async (key: string) => {
        if ((await rawClient.set(key, inProgress, 'PX', TTL_MS, 'NX')) !== 'OK') throw new Error('not fresh');
        await rawClient.set(key, outcome, 'PX', TTL_MS);
      },
      nr: async (key: string) => {
        if ((await nodeRedis.set(key, inProgress, { PX: TTL_MS, NX: true })) !== 'OK')
          throw new Error('not fresh');
        await nodeRedis.set(key, outcome, { PX: TTL_MS });
      },
      r4: async (key: string) => {
        if (!(await adapter.setIfNotExists(key, inProgress, { ttl: TTL_MS }))) throw new Error('not fresh');
        await adapter.set(key, outcome, { ttl: TTL_MS });
      },
    };

    let replayRuns = 0;
    const countReplay = (n: number) => () => {
      replayRuns++;
      return send(n);
    };
    const api = storeOnly(store, FINGERPRINT);
    for (let k = 0; k < REPLAY_KEYS; k++) {
      await api.fresh(`api:replay:${k}`);
      await idem.run(`replay:${k}`, () => send(k), { input: { n: k } });
      await ptRun({ k: 'replay', n: k });
      await niRun(ni, `replay:${k}`, k, () => send(k));
      await raw.io(`${prefix}_rawio:replay:${k}`);
      await raw.nr(`${prefix}_rawnr:replay:${k}`);
      await raw.r4(`${prefix}_rawr4:replay:${k}`);
    }

    const freshCases = (tag: string): Case[] => [
      { name: RAW_IO, note: 'SET NX PX + SET', op: (i) => raw.io(`${prefix}_rawio:${tag}:${i}`) },
      { name: RAW_NR, note: 'SET NX PX + SET', op: (i) => raw.nr(`${prefix}_rawnr:${tag}:${i}`) },
      { name: RAW_R4, note: 'SET NX PX + SET', op: (i) => raw.r4(`${prefix}_rawr4:${tag}:${i}`) },
      { name: API, note: 'claim + complete', baseline: RAW_IO, op: (i) => api.fresh(`api:${tag}:${i}`) },
      {
        name: IDEM,
        baseline: RAW_IO,
        op: (i) => idem.run(`fresh:${tag}:${i}`, () => send(i), { input: { n: i } }),
      },
      { name: PT, baseline: RAW_NR, op: (i) => ptRun({ k: `fresh:${tag}`, n: i }) },
      { name: NI, baseline: RAW_R4, op: (i) => niRun(ni, `fresh:${tag}:${i}`, i, () => send(i)) },
    ];
    const replayCases = (): Case[] => [
      { name: RAW_IO, note: 'GET', op: (i) => rawClient.get(`${prefix}_rawio:replay:${i % REPLAY_KEYS}`) },
      { name: RAW_NR, note: 'GET', op: (i) => nodeRedis.get(`${prefix}_rawnr:replay:${i % REPLAY_KEYS}`) },
      { name: RAW_R4, note: 'GET', op: (i) => adapter.get(`${prefix}_rawr4:replay:${i % REPLAY_KEYS}`) },
      { name: API, note: 'claim', baseline: RAW_IO, op: (i) => api.replay(`api:replay:${i % REPLAY_KEYS}`) },
      {
        name: IDEM,
        baseline: RAW_IO,
        op: (i) => {
          const k = i % REPLAY_KEYS;
          return idem.run(`replay:${k}`, countReplay(k), { input: { n: k } });
        },
      },
      { name: PT, baseline: RAW_NR, op: (i) => ptRun({ k: 'replay', n: i % REPLAY_KEYS }) },
      {
        name: NI,
        baseline: RAW_R4,
        op: (i) => niRun(ni, `replay:${i % REPLAY_KEYS}`, i % REPLAY_KEYS, countReplay(i)),
      },
    ];

    const results: Record<string, CaseResult[]> = {};
    for (const concurrency of [1, 16]) {
      const opts = { concurrency, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
      results[`fresh c${concurrency}`] = await measure(freshCases(`c${concurrency}`), opts);
      results[`replay c${concurrency}`] = await measure(replayCases(), opts);
    }

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
        call: (key, _caller, action) => niRun(niWait, key, 0, action),
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
      const only = (cases: Case[]) => cases.filter((c) => charted.includes(c.name));
      results[`fresh c${concurrency}`] = await measure(only(freshCases(`c${concurrency}`)), opts);
      results[`replay c${concurrency}`] = await measure(only(replayCases()), opts);
    }
    const charts = writeCharts(results, charted, cfg.docs);
    s.notes.push(
      `Throughput against concurrency (1, 4, 16, 64 callers), idem next to the peers and raw ioredis: ${charts.join(', ')} (generated by this run).`,
    );

    const idemRt = (i: number) => idem.run(`rt:${i}`, () => send(i), { input: { n: i } });
    await countRt(IDEM, idemRt, idemRt);
    const ptRt = (i: number) => ptRun({ k: 'rt', n: i });
    await countRt(PT, ptRt, ptRt);
    const niRt = (i: number) => niRun(ni, `rt:${i}`, i, () => send(i));
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
      'one connection per implementation (clients pipeline concurrent commands on it); idem calls pass `input` (fingerprinted), powertools hashes the payload (md5) as key, node-idempotency fingerprints the body (blake2s)',
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
    cleaned = await deletePrefix(rawClient, prefix).catch(() => -1);
    s.notes.push(`cleanup: deleted ${cleaned} keys under ${prefix}*`);
    await store.close?.();
    await adapter.disconnect();
    await Promise.allSettled([nodeRedis.quit(), ptClient.quit()]);
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

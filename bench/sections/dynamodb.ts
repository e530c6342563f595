/**
 * Issue 15: `idem.run` on the DynamoDB store next to Powertools' `DynamoDBPersistenceLayer`
 * (`@aws-lambda-powertools/idempotency`, driven by `makeIdempotent` outside Lambda), on the same
 * dynalite (started here, in memory, in this process: it shares the CPU with both clients, so
 * ops/s are relative, not what DynamoDB would give). Fresh key and replay at 1 and 16
 * concurrent callers, and requests per call counted by a middleware on each SDK client.
 *
 * dynalite sends no item with a failed condition (`ReturnValuesOnConditionCheckFailure`), so
 * both libraries read the record with one extra `GetItem` on a replay; DynamoDB itself saves it.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { DynamoDBPersistenceLayer } from '@aws-lambda-powertools/idempotency/dynamodb';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import { createIdem } from 'idem';
import type { RunConfig } from '../lib/config.ts';
import { installedVersion, sourceExists } from '../lib/env.ts';
import { type Case, type CaseResult, measure } from '../lib/measure.ts';
import { emptySection, fmtOps, type SectionResult, throughputTable } from '../lib/report.ts';
import { type Counts, perOp, totalPerOp } from '../lib/roundtrips.ts';
import { API, FINGERPRINT, LEASE_MS, REPLAY_KEYS, send, storeOnly, TTL_MS } from '../lib/workload.ts';

const IDEM = 'idem.run, dynamodbStore';
const PT = 'powertools makeIdempotent, DynamoDBPersistenceLayer';

type LambdaContext = Parameters<IdempotencyConfig['registerLambdaContext']>[0];

/** An SDK client on `endpoint` whose requests are counted by command name. */
function countedClient(endpoint: string) {
  const client = new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  });
  let counts: Counts = {};
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = String(context.commandName ?? '?').replace(/Command$/, '');
      counts[name] = (counts[name] ?? 0) + 1;
      return next(args);
    },
    { step: 'initialize', name: 'idemBenchRequestCounter' },
  );
  return {
    client,
    take(): Counts {
      const taken = counts;
      counts = {};
      return taken;
    },
  };
}

export async function dynamodbSection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('dynamodb', 'DynamoDB store vs Powertools on dynalite (issue 15)');
  if (!sourceExists('src/stores/dynamodb/index.ts')) {
    s.skipped = 'src/stores/dynamodb/index.ts does not exist yet';
    return s;
  }
  const { createTable, dynamodbStore } = await import('idem/dynamodb');
  const server = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const suffix = `${process.pid}_${randomBytes(3).toString('hex')}`;
  const idemTable = `idem_bench_${suffix}`;
  const ptTable = `powertools_bench_${suffix}`;
  const mine = countedClient(endpoint);
  const theirs = countedClient(endpoint);
  try {
    for (const table of [idemTable, ptTable])
      await createTable({ client: mine.client, table, timeToLive: false });
    mine.take();
    const store = dynamodbStore({ client: mine.client, table: idemTable });
    const idem = createIdem({ store, ttl: TTL_MS, lease: LEASE_MS });

    // powertools: the in-progress expiry is the "remaining time" of a (stand-in) Lambda context
    const config = new IdempotencyConfig({ expiresAfterSeconds: TTL_MS / 1000 });
    config.registerLambdaContext({ getRemainingTimeInMillis: () => LEASE_MS } as unknown as LambdaContext);
    const persistenceStore = new DynamoDBPersistenceLayer({
      tableName: ptTable,
      awsSdkV3Client: theirs.client,
    });
    const ptRun = makeIdempotent(async (p: { k: string; n: number }) => send(p.n), {
      persistenceStore,
      config,
    });

    let replayRuns = 0;
    const countReplay = (n: number) => () => {
      replayRuns++;
      return send(n);
    };
    const api = storeOnly(store, FINGERPRINT);
    const replayKeys = cfg.quick ? 100 : REPLAY_KEYS;
    for (let k = 0; k < replayKeys; k++) {
      await api.fresh(`api:replay:${k}`);
      await idem.run(`replay:${k}`, () => send(k), { input: { n: k } });
      await ptRun({ k: 'replay', n: k });
    }

    const freshCases = (tag: string): Case[] => [
      { name: API, note: 'claim + complete', op: (i) => api.fresh(`api:${tag}:${i}`) },
      { name: IDEM, op: (i) => idem.run(`fresh:${tag}:${i}`, () => send(i), { input: { n: i } }) },
      { name: PT, op: (i) => ptRun({ k: `fresh:${tag}`, n: i }) },
    ];
    const replayCases = (): Case[] => [
      { name: API, note: 'claim', op: (i) => api.replay(`api:replay:${i % replayKeys}`) },
      {
        name: IDEM,
        op: (i) => {
          const k = i % replayKeys;
          return idem.run(`replay:${k}`, countReplay(k), { input: { n: k } });
        },
      },
      { name: PT, op: (i) => ptRun({ k: 'replay', n: i % replayKeys }) },
    ];
    const results: Record<string, CaseResult[]> = {};
    for (const concurrency of [1, 16]) {
      const opts = { concurrency, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
      results[`fresh c${concurrency}`] = await measure(freshCases(`c${concurrency}`), opts);
      results[`replay c${concurrency}`] = await measure(replayCases(), opts);
    }

    // requests per call: fresh keys, then the same keys again (replays)
    const RT_OPS = 50;
    const rt: Record<string, { fresh: Counts; replay: Counts }> = {};
    const countRt = async (
      name: string,
      counter: { take(): Counts },
      call: (i: number) => Promise<unknown>,
    ) => {
      counter.take();
      for (let i = 0; i < RT_OPS; i++) await call(i);
      const fresh = counter.take();
      for (let i = 0; i < RT_OPS; i++) await call(i);
      rt[name] = { fresh, replay: counter.take() };
    };
    await countRt(IDEM, mine, (i) => idem.run(`rt:${i}`, () => send(i), { input: { n: i } }));
    await countRt(PT, theirs, (i) => ptRun({ k: 'rt', n: i }));

    s.facts.push(
      `dynalite ${installedVersion('dynalite')} in memory, in the bench process; @aws-sdk/client-dynamodb ${installedVersion('@aws-sdk/client-dynamodb')}, ` +
        `@aws-lambda-powertools/idempotency ${installedVersion('@aws-lambda-powertools/idempotency')}`,
      'one SDK client per library, one table each (same shape: id S, TTL on expiration); idem calls pass `input` (fingerprinted), powertools hashes the payload (md5) as key',
      'dynalite answers a failed condition without the item (no ALL_OLD), so a replay costs both libraries one GetItem more than on DynamoDB',
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
    s.tables.push({
      title: 'idem vs powertools on the same dynalite (ops/s)',
      columns: ['workload', 'callers', 'idem', 'powertools', 'idem ÷ powertools'],
      rows: Object.entries(results).map(([key, r]) => {
        const get = (n: string) => r.find((x) => x.name === n)!.opsPerSec;
        const [w, c] = key.split(' c');
        return [w!, c!, fmtOps(get(IDEM)), fmtOps(get(PT)), `${(get(IDEM) / get(PT)).toFixed(2)}×`];
      }),
    });
    s.tables.push({
      title: 'Requests per call (an SDK middleware on each client counts them)',
      columns: ['implementation', 'fresh key', 'replay'],
      rows: Object.entries(rt).map(([name, r]) => [name, perOp(r.fresh, RT_OPS), perOp(r.replay, RT_OPS)]),
    });

    const m = rt[IDEM]!;
    const p = rt[PT]!;
    const per = (c: Counts, op: string) => (c[op] ?? 0) / RT_OPS;
    s.checks.push(
      {
        target: 'fresh key: one request per transition (PutItem claim, UpdateItem complete)',
        actual: perOp(m.fresh, RT_OPS),
        met:
          per(m.fresh, 'PutItem') === 1 &&
          per(m.fresh, 'UpdateItem') === 1 &&
          totalPerOp(m.fresh, RT_OPS) === 2,
      },
      {
        target:
          'replay: one conditional PutItem (+ one GetItem only where the server sends no ALL_OLD item, as dynalite)',
        actual: perOp(m.replay, RT_OPS),
        met: per(m.replay, 'PutItem') === 1 && totalPerOp(m.replay, RT_OPS) <= 2,
      },
      ...(['fresh', 'replay'] as const).map((w) => ({
        target: `${w}: idem's requests ≤ powertools'`,
        actual: `${totalPerOp(m[w], RT_OPS)} vs ${totalPerOp(p[w], RT_OPS)}`,
        met: totalPerOp(m[w], RT_OPS) <= totalPerOp(p[w], RT_OPS),
      })),
    );
    for (const key of ['fresh c1', 'fresh c16', 'replay c1', 'replay c16']) {
      const r = results[key]!;
      const times = r.find((x) => x.name === IDEM)!.opsPerSec / r.find((x) => x.name === PT)!.opsPerSec;
      s.checks.push({
        target: `${key.replace(/ c(\d+)/, ', $1 caller(s)')}: idem ≥ 1.0× powertools`,
        actual: `${times.toFixed(2)}×`,
        met: times >= 1,
      });
    }
    s.checks.push({
      target: 'replays never run the action',
      actual: `${replayRuns} runs during replay`,
      met: replayRuns === 0,
    });
    return s;
  } finally {
    mine.client.destroy();
    theirs.client.destroy();
    server.closeAllConnections?.();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/**
 * Issue 3: `idem.run` on the Postgres store next to raw `pg` running the store's own SQL
 * (src/stores/postgres/sql.ts), on a pool of the same size, at 1 and 16 concurrent callers;
 * a 100-way duplicate burst; and round trips per operation, counted on the client.
 *
 * ```
 * fresh key   store: claim function call → complete      raw: the same two statements
 * replay      store: claim function call (answers the completed record)   raw: the same
 * ```
 *
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { createIdem } from 'idem';
import pg from 'pg';
import { burst, burstTable } from '../lib/burst.ts';
import type { RunConfig } from '../lib/config.ts';
import { installedVersion, reachable, SERVICES, sourceExists } from '../lib/env.ts';
import { type CaseResult, measure, ratioOf } from '../lib/measure.ts';
import { emptySection, fmtPct, mergeTables, type SectionResult, throughputTable } from '../lib/report.ts';
import { countingPool, perOp, roundTripChecks } from '../lib/roundtrips.ts';
import {
  API,
  encodedOutcome,
  FINGERPRINT,
  idAt,
  LEASE_MS,
  REPLAY_KEYS,
  randomIds,
  send,
  storeOnly,
  TTL_MS,
  token,
} from '../lib/workload.ts';

const POOL_MAX = 16;
const BURST_CALLERS = 100;

export async function postgresSection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('postgres', 'PostgreSQL store vs raw pg (issue 3)');
  if (!sourceExists('src/stores/postgres/index.ts')) {
    s.skipped = 'src/stores/postgres/index.ts does not exist yet';
    return s;
  }
  if (!(await reachable(SERVICES.postgres))) {
    s.skipped = `postgres is not reachable at ${SERVICES.postgres}`;
    return s;
  }
  const { postgresStore } = await import('idem/postgres');
  const { statements } = await import('../../src/stores/postgres/sql.ts');

  const schema = `idem_bench_${process.pid}_${randomBytes(3).toString('hex')}`;
  const newPool = () => new pg.Pool({ connectionString: SERVICES.postgres, max: POOL_MAX });
  const storePool = newPool();
  const rawPool = newPool();
  const store = postgresStore({ pool: storePool, schema });
  // a second table in the same schema, created by the store's own migration, for the raw runs
  const rawTableStore = postgresStore({ pool: rawPool, schema, table: 'raw_records', listen: false });
  try {
    await store.ready();
    await rawTableStore.ready();
    const sql = statements(schema, 'raw_records', channelOf(schema, 'raw_records'));
    const outcome = encodedOutcome(123456);
    const tok = token();
    const rawClaim = async (id: string) => {
      const r = await rawPool.query({
        text: sql.claim,
        values: [id, FINGERPRINT, tok, LEASE_MS, TTL_MS, ''],
      });
      return r.rows[0] as { acquired: boolean } | undefined;
    };
    const rawFresh = async (id: string) => {
      if (!(await rawClaim(id))?.acquired) throw new Error('raw claim did not acquire a fresh id');
      const r = await rawPool.query({ text: sql.complete, values: [id, tok, outcome, false, TTL_MS] });
      if (r.rowCount !== 1) throw new Error('raw complete did not complete');
    };

    const idem = createIdem({ store, ttl: TTL_MS, lease: LEASE_MS });
    const replayIds = randomIds(REPLAY_KEYS);
    const api = storeOnly(store, FINGERPRINT);
    for (const id of replayIds) {
      await rawFresh(id);
      await api.fresh(id);
    }
    for (let i = 0; i < REPLAY_KEYS; i++) await idem.run(`replay:${i}`, () => send(i), { input: { n: i } });
    let replayRuns = 0;

    const perRun = Math.ceil(((cfg.durationMs + cfg.warmupMs) / 1000) * 40_000);
    const results: Record<string, CaseResult[]> = {};
    for (const concurrency of [1, 16]) {
      const opts = { concurrency, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
      const ids = randomIds(perRun);
      const apiIds = randomIds(perRun);
      const tag = `c${concurrency}`;
      results[`fresh ${tag}`] = await measure(
        [
          { name: 'raw pg', note: 'claim + complete SQL', op: (i) => rawFresh(idAt(ids, i)) },
          { name: API, note: 'claim + complete', baseline: 'raw pg', op: (i) => api.fresh(idAt(apiIds, i)) },
          {
            name: 'idem.run, postgresStore',
            baseline: 'raw pg',
            op: (i) => idem.run(`fresh:${tag}:${i}`, () => send(i), { input: { n: i } }),
          },
        ],
        opts,
      );
      results[`replay ${tag}`] = await measure(
        [
          {
            name: 'raw pg',
            note: 'claim SQL',
            op: async (i) => {
              if ((await rawClaim(replayIds[i % REPLAY_KEYS]!))?.acquired) throw new Error('replay acquired');
            },
          },
          {
            name: API,
            note: 'claim',
            baseline: 'raw pg',
            op: (i) => api.replay(replayIds[i % REPLAY_KEYS]!),
          },
          {
            name: 'idem.run, postgresStore',
            baseline: 'raw pg',
            op: (i) =>
              idem.run(
                `replay:${i % REPLAY_KEYS}`,
                () => {
                  replayRuns++;
                  return send(i);
                },
                { input: { n: i % REPLAY_KEYS } },
              ),
          },
        ],
        opts,
      );
    }

    // 100 callers, each through its own idem instance, one key per burst
    const instances = Array.from({ length: BURST_CALLERS }, () =>
      createIdem({ store, ttl: TTL_MS, lease: LEASE_MS, onInProgress: 'wait' }),
    );
    const burstOpts = { callers: BURST_CALLERS, actionMs: 5, durationMs: cfg.burstMs, rounds: 1 };
    const bursts = await burst(
      [
        {
          name: 'idem.execute, postgresStore',
          note: "onInProgress 'wait', 100 instances",
          call: (key, caller, action) => instances[caller]!.execute(key, action),
        },
      ],
      'burst',
      burstOpts,
    );

    // round trips, counted on a pool wrapper around the same pool
    const names: Record<string, string> = {};
    const storeSql = statements(schema, 'idem_records', channelOf(schema, 'idem_records'));
    for (const [name, text] of Object.entries(storeSql)) names[text] = name;
    const counted = countingPool(storePool, (text) =>
      text.includes('_claim"(') ? 'claim' : (names[text] ?? text.trim().split(/\s+/)[0]!.toLowerCase()),
    );
    const rtStore = postgresStore({ pool: counted.pool, schema });
    const rtIdem = createIdem({ store: rtStore, ttl: TTL_MS, lease: LEASE_MS });
    await rtIdem.run('rt:warm', () => send(0)); // the schema check of a new store instance
    counted.take();
    const RT_OPS = 50;
    for (let i = 0; i < RT_OPS; i++) await rtIdem.run(`rt:${i}`, () => send(i), { input: { n: i } });
    const freshRt = counted.take();
    for (let i = 0; i < RT_OPS; i++) await rtIdem.run(`rt:${i}`, () => send(i), { input: { n: i } });
    const replayRt = counted.take();
    await rtStore.close();

    const version = (await rawPool.query('SHOW server_version')).rows[0] as { server_version: string };
    s.facts.push(
      `PostgreSQL ${version.server_version} at ${new URL(SERVICES.postgres).host}; pg ${installedVersion('pg')}; ` +
        `store and raw each on their own pg.Pool (max ${POOL_MAX}); every call passes \`input\` (fingerprint checked); raw binds the same values`,
      'the store sends named prepared statements (parsed once per connection, its default); raw pg sends the same text unnamed, as `pool.query(text, values)` does',
    );
    s.tables.push(
      mergeTables('Fresh key: claim, run, complete', [
        throughputTable('', results['fresh c1']!),
        throughputTable('', results['fresh c16']!),
      ]),
      mergeTables('Replay of a completed key', [
        throughputTable('', results['replay c1']!),
        throughputTable('', results['replay c16']!),
      ]),
      burstTable(
        `Duplicate burst: ${BURST_CALLERS} concurrent calls of one fresh key, action takes ${burstOpts.actionMs} ms`,
        bursts,
        burstOpts,
      ),
      {
        title: 'Round trips per call (client-side count of pg queries)',
        columns: ['implementation', 'fresh key', 'replay'],
        rows: [
          ['idem.run, postgresStore', perOp(freshRt, RT_OPS), perOp(replayRt, RT_OPS)],
          ['raw pg', '2 (claim ×1, complete ×1)', '1 (claim ×1)'],
        ],
      },
    );
    for (const key of ['fresh c1', 'fresh c16', 'replay c1', 'replay c16']) {
      const r = results[key]!;
      const ratio = ratioOf(r.at(-1)!, r);
      s.checks.push({
        target: `${key.replace(/ c(\d+)/, ', $1 caller(s)')}: postgresStore ≥ 85 % of raw pg`,
        actual: fmtPct(ratio),
        met: ratio === undefined ? undefined : ratio >= 0.85,
      });
    }
    s.checks.push(...roundTripChecks(freshRt, replayRt, RT_OPS, { claim: 'claim', complete: 'complete' }));
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
    await rawPool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await store.close();
    await rawTableStore.close();
    await Promise.all([storePool.end(), rawPool.end()]);
  }
}

/** The store's LISTEN/NOTIFY channel, derived as src/stores/postgres/index.ts derives it. */
const channelOf = (schema: string, table: string) =>
  `idem_${createHash('sha256').update(`${schema}.${table}`).digest('hex').slice(0, 24)}`;

/**
 * Issue 10: the run journal's cost per step on SQLite, Postgres and Redis, next to a bare
 * function call and to the raw store write a step needs at least (claim + complete of one
 * record with the same outcome), for step outputs of 1 B, 10 KB and 100 KB; and the time to
 * resume a 1,000-step run whose steps are all recorded (each replayed without running).
 *
 * ```
 * bare call     fn() → output
 * raw write     store.claim(fresh id) → store.complete(id, output)
 * run.step      fence → claim step → fn() (with the index slot claim sent alongside) → complete
 * resume        idem.workflow(runKey) over 1,000 recorded steps: one claim per step
 * ```
 *
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdem, type Store, type WorkflowRun } from 'idem';
import { encodeOutcome } from '../../src/core/outcome.ts';
import type { RunConfig } from '../lib/config.ts';
import { reachable, SERVICES } from '../lib/env.ts';
import { deletePrefix, dropSchema } from '../lib/gateway-procs.ts';
import { measure } from '../lib/measure.ts';
import { emptySection, type SectionResult, throughputTable } from '../lib/report.ts';
import { LEASE_MS, TTL_MS } from '../lib/workload.ts';

const SIZES: Array<[string, number]> = [
  ['1 B', 1],
  ['10 KB', 10 * 1024],
  ['100 KB', 100 * 1024],
];
const RESUME_STEPS = 1000;

interface Backend {
  name: string;
  store: Store;
  cleanup: () => Promise<unknown>;
}

async function backends(): Promise<{ list: Backend[]; skipped: string[] }> {
  const list: Backend[] = [];
  const skipped: string[] = [];
  const { sqliteStore } = await import('idem/sqlite');
  const dir = mkdtempSync(join(tmpdir(), 'idem-bench-journal-'));
  list.push({
    name: 'sqlite',
    store: sqliteStore({ path: join(dir, 'journal.db') }),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  });
  if (await reachable(SERVICES.postgres)) {
    const { postgresStore } = await import('idem/postgres');
    const schema = `idem_bench_journal_${process.pid}_${randomBytes(3).toString('hex')}`;
    list.push({
      name: 'postgres',
      store: postgresStore({ connectionString: SERVICES.postgres, schema }),
      cleanup: () => dropSchema(schema),
    });
  } else skipped.push(`postgres is not reachable at ${SERVICES.postgres}`);
  if (await reachable(SERVICES.redis)) {
    const { redisStore } = await import('idem/redis');
    const prefix = `idem_bench_journal_${process.pid}_${randomBytes(3).toString('hex')}`;
    list.push({
      name: 'redis',
      store: redisStore({ url: SERVICES.redis, prefix }),
      cleanup: () => deletePrefix(prefix),
    });
  } else skipped.push(`redis is not reachable at ${SERVICES.redis}`);
  return { list, skipped };
}

/** A store that counts its calls. */
function counted(store: Store): { store: Store; calls: () => number } {
  let n = 0;
  const proxy = new Proxy(store, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        n++;
        return v.apply(target, args);
      };
    },
  });
  return { store: proxy, calls: () => n };
}

/** A run held open: `run.step` calls made from outside the body, one fresh occurrence each. */
async function openRun(idem: ReturnType<typeof createIdem>, runKey: string) {
  let finish!: () => void;
  const finished = new Promise<void>((r) => {
    finish = r;
  });
  let run!: WorkflowRun;
  const started = new Promise<void>((ready) => {
    void idem.workflow(runKey, async (r) => {
      run = r;
      ready();
      await finished;
    });
  });
  await started;
  return { run, close: finish };
}

export async function journalSection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('journal', 'Run journal: cost per step and resume (issue 10)');
  const { list, skipped } = await backends();
  for (const why of skipped) s.notes.push(`skipped: ${why}`);
  const opts = { concurrency: 1, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
  const resumeRows: string[][] = [];
  try {
    for (const b of list) {
      const idem = createIdem({ store: b.store, ttl: TTL_MS, lease: LEASE_MS });
      for (const [label, bytes] of SIZES) {
        const output = 'x'.repeat(bytes);
        const encoded = encodeOutcome({ kind: 'value', value: output });
        const open = await openRun(idem, `bench:${label}:${randomUUID()}`);
        const rawWrite = async () => {
          const id = randomUUID();
          const token = randomUUID();
          await b.store.claim({ id, fingerprint: '', leaseMs: LEASE_MS, ttlMs: TTL_MS, token });
          await b.store.complete(id, token, encoded, TTL_MS);
        };
        const results = await measure(
          [
            { name: 'bare function call', op: () => output },
            { name: 'raw store write', note: 'claim + complete', op: rawWrite },
            {
              name: 'run.step',
              note: 'claim + index slot + complete',
              baseline: 'raw store write',
              op: () => open.run.step('s', () => output),
            },
          ],
          opts,
        );
        open.close();
        s.tables.push(throughputTable(`${b.name}: one step with a ${label} output`, results));
      }
      // resume: 1,000 recorded steps replayed by a new invocation
      const c = counted(b.store);
      const cidem = createIdem({ store: c.store, ttl: TTL_MS, lease: LEASE_MS });
      const runKey = `bench:resume:${randomUUID()}`;
      let crash = true;
      let executed = 0;
      const body = async (run: WorkflowRun) => {
        for (let i = 0; i < RESUME_STEPS; i++) {
          await run.step('step', () => {
            executed++;
            return {
              i,
              text: 'a recorded step output of about a hundred bytes, like a short tool answer or id',
            };
          });
        }
        if (crash) throw new Error('crash after the last step');
        return 'done';
      };
      await cidem.workflow(runKey, body).catch(() => {});
      crash = false;
      const before = c.calls();
      const t0 = performance.now();
      await cidem.workflow(runKey, body);
      const ms = performance.now() - t0;
      const calls = c.calls() - before;
      resumeRows.push([
        b.name,
        String(RESUME_STEPS),
        `${ms.toFixed(0)} ms`,
        `${((ms * 1000) / RESUME_STEPS).toFixed(0)} µs`,
        String(calls),
        String(executed === RESUME_STEPS ? 'none' : `${executed - RESUME_STEPS} re-ran ✗`),
      ]);
      await idem.close();
    }
    s.tables.push({
      title: 'Resume of a run whose 1,000 steps are recorded (one invocation, sequential)',
      columns: ['store', 'steps', 'resume time', 'per step', 'store calls', 'steps re-run'],
      rows: resumeRows,
    });
    s.facts.push(
      `stores: ${list.map((b) => b.name).join(', ')}; lease ${LEASE_MS} ms, ttl ${TTL_MS} ms; outputs are strings of 1 B, 10 KB, 100 KB`,
    );
    s.notes.push(
      '`run.step` runs inside one open run (each call a new occurrence `s#n`): its cost is the step claim, the run-index slot claim (sent while the step runs) and the completion, against `raw store write` = one claim and one complete of the same outcome through the store API.',
    );
  } finally {
    for (const b of list) await b.cleanup().catch(() => {});
  }
  return s;
}

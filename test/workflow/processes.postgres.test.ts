/**
 * The journal's process scenarios on Postgres, and `run.tx` crashed before and after COMMIT:
 * the effect (a row in `effects`, counted independently) exists exactly once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdem } from 'idem';
import { postgresStore } from 'idem/postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceAvailable, uniqueName } from '../helpers/services.ts';
import { adminPool, dropSchema, PG_URL } from '../stores/fixtures/postgres-suite.ts';
import {
  frozenZombie,
  killedMidStep,
  type ScenarioEnv,
  startWorker,
  threeRacing,
} from './fixtures/scenarios.ts';

const up = await serviceAvailable('postgres');

describe.skipIf(!up)('run journal across processes on postgres', () => {
  const schema = uniqueName('idem_wf');
  const dir = mkdtempSync(join(tmpdir(), 'idem-wf-pg-'));
  const admin = adminPool();
  const stores: Array<ReturnType<typeof postgresStore>> = [];
  const env: ScenarioEnv = {
    store: {
      module: new URL('../stores/fixtures/postgres-factory.ts', import.meta.url).pathname,
      arg: { connectionString: PG_URL, schema, max: 2 },
    },
    inspect: () => {
      const s = postgresStore({ connectionString: PG_URL, schema, max: 2 });
      stores.push(s);
      return s;
    },
    ledger: (name) => join(dir, `${name}.ledger`),
    runKey: (name) => `run:${name}`,
  };
  beforeAll(async () => {
    await admin.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await admin.query(
      `CREATE TABLE "${schema}".effects (id serial PRIMARY KEY, run text NOT NULL, step text NOT NULL, attempt int NOT NULL, pid int NOT NULL)`,
    );
  });
  afterAll(async () => {
    await dropSchema(admin, schema);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a process SIGKILLed mid-step resumes in another: done steps never re-run, the cut one re-runs with mayHaveRun and the same downstreamKey', () =>
    killedMidStep(env));
  it('three processes racing one run: each step executes once', () => threeRacing(env));
  it('a zombie frozen with SIGSTOP past a takeover: its late step write is refused', () => frozenZombie(env));

  for (const killAt of ['before-commit', 'after-commit'] as const) {
    it(`run.tx killed ${killAt}: after the resume the effect exists exactly once`, async () => {
      const runKey = `tx:${killAt}`;
      const cfg = {
        store: env.store,
        runKey,
        steps: 3,
        ledger: env.ledger(`tx-${killAt}`),
        leaseMs: 700,
        tx: { kind: 'pg' as const, connectionString: PG_URL, schema },
        txAt: 2,
      };
      const a = startWorker({ ...cfg, killAt });
      expect(await a.exit).toBe(137);
      const count = async () =>
        (
          await admin.query(
            `SELECT count(*)::int AS n FROM "${schema}".effects WHERE run = $1 AND step = 'debit#1'`,
            [runKey],
          )
        ).rows[0].n;
      // before commit: rolled back with the process; after commit: the effect and its row are in
      expect(await count()).toBe(killAt === 'before-commit' ? 0 : 1);
      const b = startWorker(cfg);
      const done = (await b.next()) as { ok: boolean; value: unknown[] };
      await b.exit;
      expect(done.ok).toBe(true);
      expect(await count()).toBe(1);
      const { rows } = await admin.query(
        `SELECT pid FROM "${schema}".effects WHERE run = $1 AND step = 'debit#1'`,
        [runKey],
      );
      expect(done.value[1]).toEqual({ tx: 'debit#1', pid: rows[0].pid });
      const idem = createIdem({ store: env.inspect() });
      const info = await idem.runs.get(runKey);
      expect(info.steps.map((s) => `${s.stepId}:${s.status}:${s.attempts}`)).toEqual([
        's#1:completed:1',
        'debit#1:completed:2',
        's#2:completed:1',
      ]);
      await idem.close();
      // 'before-commit': the debit ran twice, only the second committed; 'after-commit': once
      const attempts = (
        await admin.query(`SELECT attempt FROM "${schema}".effects WHERE run = $1 AND step = 'debit#1'`, [
          runKey,
        ])
      ).rows;
      expect(attempts).toEqual([{ attempt: killAt === 'before-commit' ? 2 : 1 }]);
    });
  }
});

/** The journal's process scenarios on SQLite (one file shared by every process). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { createIdem } from 'idem';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, describe, expect, it } from 'vitest';
import {
  frozenZombie,
  killedMidStep,
  type ScenarioEnv,
  startWorker,
  threeRacing,
} from './fixtures/scenarios.ts';

const dir = mkdtempSync(join(tmpdir(), 'idem-wf-proc-'));
const path = join(dir, 'idem.db');
const env: ScenarioEnv = {
  store: { module: new URL('../stores/fixtures/sqlite-factory.ts', import.meta.url).pathname, arg: { path } },
  inspect: () => sqliteStore({ path }),
  ledger: (name) => join(dir, `${name}.ledger`),
  runKey: (name) => `run:${name}`,
};
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('run journal across processes on sqlite', () => {
  it('a process SIGKILLed mid-step resumes in another: done steps never re-run, the cut one re-runs with mayHaveRun and the same downstreamKey', () =>
    killedMidStep(env));
  it('three processes racing one run: each step executes once', () => threeRacing(env));
  it('a zombie frozen with SIGSTOP past a takeover: its late step write is refused', () => frozenZombie(env));

  for (const killAt of ['before-commit', 'after-commit'] as const) {
    it(`run.tx on node:sqlite killed ${killAt}: after the resume the effect exists exactly once`, async () => {
      const effectsPath = join(dir, `effects-${killAt}.db`);
      const db = new DatabaseSync(effectsPath);
      db.exec('PRAGMA journal_mode = WAL');
      db.exec(
        'CREATE TABLE effects (id INTEGER PRIMARY KEY, run TEXT, step TEXT, attempt INTEGER, pid INTEGER)',
      );
      const count = () => (db.prepare('SELECT count(*) AS n FROM effects').get() as { n: number }).n;
      const runKey = `tx:${killAt}`;
      const cfg = {
        store: env.store,
        runKey,
        steps: 3,
        ledger: env.ledger(`tx-${killAt}`),
        leaseMs: 700,
        tx: { kind: 'sqlite' as const, path: effectsPath },
        txAt: 2,
      };
      const a = startWorker({ ...cfg, killAt });
      expect(await a.exit).toBe(137);
      expect(count()).toBe(killAt === 'before-commit' ? 0 : 1);
      const b = startWorker(cfg);
      const done = (await b.next()) as { ok: boolean; value: unknown[] };
      await b.exit;
      expect(done.ok).toBe(true);
      expect(count()).toBe(1);
      const row = db.prepare('SELECT attempt, pid FROM effects').get() as { attempt: number; pid: number };
      expect(row.attempt).toBe(killAt === 'before-commit' ? 2 : 1);
      expect(done.value[1]).toEqual({ tx: 'debit#1', pid: row.pid });
      const idem = createIdem({ store: env.inspect() });
      expect((await idem.runs.get(runKey)).steps.map((s) => `${s.stepId}:${s.status}:${s.attempts}`)).toEqual(
        ['s#1:completed:1', 'debit#1:completed:2', 's#2:completed:1'],
      );
      await idem.close();
      db.close();
    });
  }
});

/** The journal's process scenarios on SQLite (one file shared by every process). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, describe, it } from 'vitest';
import { frozenZombie, killedMidStep, type ScenarioEnv, threeRacing } from './fixtures/scenarios.ts';

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
});

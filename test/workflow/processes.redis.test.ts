/** The journal's process scenarios on Redis. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisStore } from 'idem/redis';
import { Redis } from 'ioredis';
import { afterAll, describe, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix } from '../stores/fixtures/redis-suite.ts';
import { frozenZombie, killedMidStep, type ScenarioEnv, threeRacing } from './fixtures/scenarios.ts';

const up = await serviceAvailable('redis');

describe.skipIf(!up)('run journal across processes on redis', () => {
  const prefix = uniqueName('idem_wf');
  const dir = mkdtempSync(join(tmpdir(), 'idem-wf-redis-'));
  const env: ScenarioEnv = {
    store: {
      module: new URL('../stores/fixtures/redis-factory.ts', import.meta.url).pathname,
      arg: { url: SERVICES.redis, prefix },
    },
    inspect: () => redisStore({ url: SERVICES.redis, prefix }),
    ledger: (name) => join(dir, `${name}.ledger`),
    runKey: (name) => `run:${name}`,
  };
  afterAll(async () => {
    const client = new Redis(SERVICES.redis);
    await deletePrefix(client, prefix);
    await client.quit();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a process SIGKILLed mid-step resumes in another: done steps never re-run, the cut one re-runs with mayHaveRun and the same downstreamKey', () =>
    killedMidStep(env));
  it('three processes racing one run: each step executes once', () => threeRacing(env));
  it('a zombie frozen with SIGSTOP past a takeover: its late step write is refused', () => frozenZombie(env));
});

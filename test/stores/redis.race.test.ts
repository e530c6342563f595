/**
 * The duplicate-delivery race against real Redis: 8 OS processes each receive every one of
 * 500 keys 4 times, in shuffled order, and run it through the engine, with the conformance
 * suite's worker (`raceProcesses` from idem/testing). An append-only ledger file, written by
 * the actions themselves, must show exactly one execution per key, and every one of the 32
 * answers per key must be that execution's value.
 */
import { raceProcesses } from 'idem/testing';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix } from './fixtures/redis-suite.ts';

const up = await serviceAvailable('redis');
const PROCESSES = 8;
const KEYS = 500;
const DELIVERIES = 4;

describe.skipIf(!up)('redis store: duplicate deliveries across OS processes', () => {
  const prefix = uniqueName('idem_redis');
  afterAll(async () => {
    const admin = new Redis(SERVICES.redis);
    await deletePrefix(admin, prefix);
    await admin.quit();
  });

  it(`${PROCESSES} processes × ${KEYS} keys × ${DELIVERIES} deliveries: one execution per key, identical outcomes`, async () => {
    const report = await raceProcesses({
      processStore: {
        module: new URL('./fixtures/redis-factory.ts', import.meta.url).pathname,
        arg: { url: SERVICES.redis, prefix },
      },
      processes: PROCESSES,
      keys: KEYS,
      deliveries: DELIVERIES,
      concurrency: 16,
    });
    expect(report.events.wait).toBeGreaterThan(0); // processes really met on the same keys mid-action
    console.log(
      `[redis race] ${report.deliveries} deliveries in ${Math.round(report.elapsedMs)} ms: ${JSON.stringify(report.events)}`,
    );
  }, 150_000);
});

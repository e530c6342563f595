/**
 * The race: 8 OS processes, 500 keys, every key delivered 4 times to every process
 * (32 deliveries per key, 16 000 in all) through the engine on one Postgres store, run by the
 * conformance suite's worker (`raceProcesses` from idem/testing). The ledger file, appended by
 * the action itself, must hold exactly one execution per key, and all 32 deliveries of a key
 * must see that execution's value.
 */
import { raceProcesses } from 'idem/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { serviceAvailable, uniqueName } from '../helpers/services.ts';
import { adminPool, dropSchema, PG_URL } from './fixtures/postgres-suite.ts';

const up = await serviceAvailable('postgres');
const PROCESSES = 8;
const KEYS = 500;
const DELIVERIES = 4;

describe.skipIf(!up)(
  `postgres store: ${PROCESSES} processes × ${KEYS} keys × ${DELIVERIES} deliveries`,
  () => {
    const schema = uniqueName('idem_pg_race');
    afterAll(async () => {
      const admin = adminPool();
      await dropSchema(admin, schema);
      await admin.end();
    });

    it('exactly one execution per key, and every delivery sees its value', async () => {
      const report = await raceProcesses({
        processStore: {
          module: new URL('./fixtures/postgres-factory.ts', import.meta.url).pathname,
          arg: { connectionString: PG_URL, schema, max: 3 }, // 8 processes share max_connections
        },
        processes: PROCESSES,
        keys: KEYS,
        deliveries: DELIVERIES,
        concurrency: 16,
        leaseMs: 10_000,
      });
      expect(report.events.wait).toBeGreaterThan(0); // processes really met on the same keys mid-action
      console.info(
        `[postgres race] ${report.deliveries} deliveries in ${Math.round(report.elapsedMs)} ms: ${JSON.stringify(report.events)}`,
      );
    }, 150_000);
  },
);

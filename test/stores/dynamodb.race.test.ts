/**
 * The duplicate-delivery race on DynamoDB (dynalite started here): OS processes each receive
 * every key several times, in shuffled order, through the engine (`raceProcesses` from
 * idem/testing). The ledger file, appended by the actions, must hold exactly one execution per
 * key, and every delivery of a key must answer that execution's value.
 *
 * `npm test` runs a slice (4 processes × 50 keys × 4 deliveries) to stay within the suite's
 * time budget: dynalite is one Node process answering every request. The full race,
 * 8 processes × 500 keys × 4 deliveries (16 000 deliveries), runs with IDEM_DYNAMO_RACE=full.
 */
import { raceProcesses } from 'idem/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestTable, startDynalite } from '../helpers/dynalite.ts';
import { uniqueName } from '../helpers/services.ts';

const FULL = process.env.IDEM_DYNAMO_RACE === 'full';
const PROCESSES = FULL ? 8 : 4;
const KEYS = FULL ? 500 : 50;
const DELIVERIES = 4;

describe('dynamodb store (dynalite): duplicate deliveries across OS processes', async () => {
  const dynalite = await startDynalite();
  const table = uniqueName('idem_ddb_race');
  await createTestTable(dynalite.endpoint, table);
  afterAll(() => dynalite.stop());

  it(`${PROCESSES} processes × ${KEYS} keys × ${DELIVERIES} deliveries: one execution per key, identical outcomes`, async () => {
    const report = await raceProcesses({
      processStore: {
        module: new URL('./fixtures/dynamodb-factory.ts', import.meta.url).pathname,
        // a long request timeout: this checks atomicity, and the machine running it may be loaded
        arg: { endpoint: dynalite.endpoint, table, clockSkewMs: 1000, requestTimeout: 30_000 },
      },
      processes: PROCESSES,
      keys: KEYS,
      deliveries: DELIVERIES,
      concurrency: 16,
      // dynalite answers in tens of ms: 3 ms actions let processes miss each other entirely (a
      // quiet run once saw no wait at all), 100 ms ones keep them meeting mid-action
      actionMs: 100,
      timeoutMs: FULL ? 600_000 : 120_000,
    });
    expect(report.deliveries).toBe(PROCESSES * KEYS * DELIVERIES);
    expect(report.events.wait).toBeGreaterThan(0); // processes really met on the same keys mid-action
    console.log(
      `[dynamodb race] ${report.deliveries} deliveries in ${Math.round(report.elapsedMs)} ms: ${JSON.stringify(report.events)}`,
    );
  }, 660_000);
});

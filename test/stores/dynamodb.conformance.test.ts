/**
 * The whole conformance suite (contract, engine rules, 8 OS processes racing, a SIGKILLed
 * holder taken over) on the DynamoDB store, against dynalite started here on a free port.
 */
import { testStore } from 'idem/testing';
import { afterAll } from 'vitest';
import { dynamodbStore } from '../../src/stores/dynamodb/index.ts';
import { createTestTable, dynamoClient, startDynalite } from '../helpers/dynalite.ts';
import { uniqueName } from '../helpers/services.ts';

const dynalite = await startDynalite();
const table = uniqueName('idem_ddb');
await createTestTable(dynalite.endpoint, table);
const client = dynamoClient(dynalite.endpoint);
afterAll(async () => {
  client.destroy();
  await dynalite.stop();
});

testStore({
  name: 'dynamodb (dynalite)',
  // the suite's leases are 300 ms and it waits 100 ms past them: a 50 ms skew margin fits
  // requestTimeout: generous, the tests run on a loaded machine against one dynalite process
  create: () => dynamodbStore({ client, table, clockSkewMs: 50, requestTimeout: 30_000 }),
  maxOutcomeBytes: 400_000,
  processStore: {
    module: new URL('./fixtures/dynamodb-factory.ts', import.meta.url).pathname,
    arg: { endpoint: dynalite.endpoint, table, clockSkewMs: 50 },
  },
});

/**
 * Runs handler.ts locally, as Lambda would, against dynalite (DynamoDB in memory, started
 * here): the same event twice, then the same order id with another amount.
 *
 *   npm run example:lambda
 */
import type { AddressInfo } from 'node:net';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import { createTable } from 'idem/dynamodb';

const server = dynalite({ createTableMs: 0 });
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

// What the Lambda environment provides, pointed at dynalite (the SDK reads these itself).
Object.assign(process.env, {
  AWS_ENDPOINT_URL_DYNAMODB: endpoint,
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'local',
  AWS_SECRET_ACCESS_KEY: 'local',
  IDEM_TABLE: 'idem-orders',
});
const admin = new DynamoDBClient({});
await createTable({ client: admin, table: 'idem-orders', timeToLive: false }); // dynalite has no TTL
admin.destroy();

// Two containers: each import is a fresh module (its own client, engine and charges), so only
// the DynamoDB table connects the two invocations, as with a cold start after a redelivery.
const container = (name: string) =>
  import(`./handler.ts?container=${name}`) as Promise<typeof import('./handler.ts')>;
const a = await container('a');
const b = await container('b');
const event = { orderId: 'order-1042', customer: 'c-7', amount: 4200 };

const first = await a.handler(event);
console.log(`invoke 1 (container a): ${first.statusCode} ${first.body}`);
const second = await b.handler(event);
console.log(`invoke 2 (container b, same event): ${second.statusCode} ${second.body}`);
const changed = await b.handler({ ...event, amount: 9900 });
console.log(`invoke 3 (same order, other amount): ${changed.statusCode} ${changed.body}`);
const charged = a.charges.length + b.charges.length;
console.log(`charges made: ${charged}`);

server.close();
const ok = charged === 1 && first.body.replace('false', 'true') === second.body && changed.statusCode === 422;
console.log(ok ? 'charged once: yes' : 'charged once: NO');
process.exit(ok ? 0 : 1);

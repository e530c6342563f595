/**
 * dynalite (DynamoDB on an in-memory LevelDB, an npm package) started by the test itself on a
 * free port, so the DynamoDB suites always run: no service to install, nothing to skip.
 */
import type { AddressInfo } from 'node:net';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import { createTable } from '../../src/stores/dynamodb/index.ts';

/** A running dynalite: its endpoint, and `stop()` to close it. */
export interface Dynalite {
  endpoint: string;
  stop(): Promise<void>;
}

/** Starts dynalite on 127.0.0.1 and a free port, tables ACTIVE at once. */
export async function startDynalite(): Promise<Dynalite> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  // longer than the SDK keeps idle sockets, so a request never races the server closing one
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    // closing the server closes dynalite's database: let requests in flight finish first
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => setTimeout(r, 200));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** An SDK client for `endpoint` with dummy credentials (dynalite checks none), retrying as by default. */
export function dynamoClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'idem', secretAccessKey: 'idem' },
  });
}

/** Creates `table` for the store (dynalite has no TTL: purgeExpired cleans up). */
export async function createTestTable(endpoint: string, table: string): Promise<void> {
  const client = dynamoClient(endpoint);
  try {
    await createTable({ client, table, timeToLive: false });
  } finally {
    client.destroy();
  }
}

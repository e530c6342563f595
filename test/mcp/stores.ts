/**
 * The stores the idem/mcp in-memory suite runs on: SQLite, and Postgres and Redis when reachable
 * (required under IDEM_REQUIRE_SERVICES=1), each in its own schema / key prefix, removed after
 * the file. Tests on one store share it and keep apart through a scope per test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Store } from 'idem';
import { postgresStore } from 'idem/postgres';
import { redisStore } from 'idem/redis';
import { sqliteStore } from 'idem/sqlite';
import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { adminPool, dropSchema, PG_URL } from '../stores/fixtures/postgres-suite.ts';
import { deletePrefix } from '../stores/fixtures/redis-suite.ts';

const dir = mkdtempSync(join(tmpdir(), 'idem-mcp-stores-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

export const STORES: Array<[string, () => Store]> = [
  ['sqlite', () => sqliteStore({ path: join(dir, `s-${Math.random().toString(36).slice(2)}.db`) })],
];
if (await serviceAvailable('postgres')) {
  const schema = uniqueName('idem_mcp');
  STORES.push(['postgres', () => postgresStore({ connectionString: PG_URL, schema, max: 2 })]);
  afterAll(async () => {
    const admin = adminPool();
    await dropSchema(admin, schema);
    await admin.end();
  });
}
if (await serviceAvailable('redis')) {
  const prefix = uniqueName('idem_mcp');
  STORES.push(['redis', () => redisStore({ url: SERVICES.redis, prefix })]);
  afterAll(async () => {
    const client = new Redis(SERVICES.redis);
    await deletePrefix(client, prefix);
    await client.quit();
  });
}

/**
 * Bytes per record, per store, measured: N keyed requests through a real gateway in front of
 * the demo service (a typical JSON API answer, ~200 B of body plus headers), stored in SQLite,
 * Postgres, Redis and DynamoDB (dynalite); then each store's own accounting of what it holds:
 *
 * - SQLite: the database file (+ WAL) after a checkpoint, and `dbstat` of the table and index
 * - Postgres: `pg_total_relation_size` of the table (heap, TOAST, indexes)
 * - Redis: `MEMORY USAGE` of each record key (the value, the key and Redis's overhead)
 * - DynamoDB: the item size DynamoDB bills (attribute names + values) of each item read back
 *
 * ```
 * node --conditions=idem-source bench/tools/record-size.ts [--records 2000] [--body 200]
 * ```
 * Postgres and Redis are skipped (said so) when not reachable. Output: a Markdown table.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parseArgs } from 'node:util';
import type { Store } from '../../src/core/store.ts';
import { createGateway } from '../../src/gateway/index.ts';
import { sqliteStore } from '../../src/stores/sqlite/index.ts';
import { startUpstream } from '../../test/gateway/helpers.ts';

const { values } = parseArgs({ options: { records: { type: 'string' }, body: { type: 'string' } } });
const N = Number(values.records ?? 2000);
const BODY = Number(values.body ?? 200);
const run = `rs${Date.now().toString(36)}`;

/** An API answer of about BODY bytes, like a created payment. */
const upstream = await startUpstream((req, res) => {
  req.resume();
  req.on('end', () => {
    const id = `pay_${Math.random().toString(36).slice(2, 14)}`;
    // random text: a compressible pad would flatter Postgres's TOAST compression
    const pad = randomBytes(BODY)
      .toString('base64url')
      .slice(0, Math.max(0, BODY - 120));
    res.writeHead(201, {
      'content-type': 'application/json',
      'x-request-id': `req_${Math.random().toString(36).slice(2, 18)}`,
      date: new Date().toUTCString(),
    });
    res.end(
      JSON.stringify({
        id,
        status: 'succeeded',
        amount: 1240,
        currency: 'eur',
        created: Date.now(),
        note: pad,
      }),
    );
  });
});

/** Sends N keyed requests through a gateway on `store`. */
async function fill(store: Store): Promise<void> {
  const gateway = await createGateway({ upstream: upstream.url, store, purgeEvery: false, logLevel: 'warn' });
  const url = await gateway.listen(0);
  try {
    for (let i = 0; i < N; i += 10) {
      await Promise.all(
        Array.from({ length: Math.min(10, N - i) }, (_, j) =>
          fetch(`${url}/v1/payments`, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'idempotency-key': `${run}-${crypto.randomUUID()}`,
              authorization: 'Bearer sk_test_caller',
            },
            body: JSON.stringify({ amount: 1240, currency: 'eur', customer: `cus_${i + j}` }),
          }).then((r) => r.arrayBuffer()),
        ),
      );
    }
  } finally {
    await gateway.close();
  }
}

const rows: string[][] = [];
/** Bytes per record actually stored (a request whose store write timed out stored none). */
const per = (bytes: number, records: number) => (bytes / records).toFixed(0);

// --- SQLite ---
{
  const dir = mkdtempSync(join(tmpdir(), 'idem-record-size-'));
  const path = join(dir, 'idem.db');
  const store = sqliteStore({ path });
  await fill(store);
  await store.close?.();
  const db = new DatabaseSync(path);
  db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  const count = Number((db.prepare('SELECT count(*) AS n FROM idem_records').get() as { n: number }).n);
  let dbstat = '';
  try {
    const row = db
      .prepare("SELECT SUM(pgsize) AS bytes FROM dbstat WHERE name LIKE 'idem_records%'")
      .get() as { bytes: number };
    dbstat = `; dbstat (table + index pages): ${per(row.bytes, count)} B`;
  } catch {
    dbstat = '; dbstat not compiled in';
  }
  db.close();
  const file = statSync(path).size;
  rows.push(['SQLite', per(file, count), `file size after a checkpoint / ${count} records${dbstat}`]);
  rmSync(dir, { recursive: true, force: true });
}

// --- Postgres ---
try {
  const pg = (await import('pg')).default;
  const pool = new pg.Pool({
    connectionString: process.env.IDEM_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  });
  await pool.query('SELECT 1');
  const { postgresStore } = await import('../../src/stores/postgres/index.ts');
  const schema = `idem_${run}`;
  const store = postgresStore({ pool, schema });
  try {
    await fill(store);
    await pool.query(`VACUUM ANALYZE ${schema}.idem_records`);
    const { rows: r } = await pool.query(
      `SELECT pg_total_relation_size('${schema}.idem_records') AS total, pg_relation_size('${schema}.idem_records') AS heap, (SELECT count(*) FROM ${schema}.idem_records) AS n`,
    );
    const count = Number(r[0].n);
    rows.push([
      'Postgres',
      per(Number(r[0].total), count),
      `pg_total_relation_size / ${count} records (heap alone ${per(Number(r[0].heap), count)} B; the rest is TOAST and the indexes)`,
    ]);
  } finally {
    await store.close?.();
    await pool.query(`DROP SCHEMA ${schema} CASCADE`);
    await pool.end();
  }
} catch (error) {
  rows.push(['Postgres', '-', `skipped: ${(error as Error).message}`]);
}

// --- Redis ---
try {
  const { Redis } = await import('ioredis');
  const client = new Redis(process.env.IDEM_REDIS_URL ?? 'redis://127.0.0.1:6379', {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
  });
  await client.connect();
  const { redisStore } = await import('../../src/stores/redis/index.ts');
  const prefix = `idem-${run}`;
  try {
    await fill(redisStore({ client, prefix }));
    let total = 0;
    let keys = 0;
    let cursor = '0';
    do {
      const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      cursor = next;
      for (const key of batch) {
        total += Number(await client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
        keys++;
      }
    } while (cursor !== '0');
    rows.push(['Redis', per(total, keys), `MEMORY USAGE summed over the ${keys} record keys / ${keys}`]);
    const stale: string[] = [];
    cursor = '0';
    do {
      const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      cursor = next;
      stale.push(...batch);
    } while (cursor !== '0');
    for (let i = 0; i < stale.length; i += 500) await client.del(...stale.slice(i, i + 500));
  } finally {
    client.disconnect();
  }
} catch (error) {
  rows.push(['Redis', '-', `skipped: ${(error as Error).message}`]);
}

// --- DynamoDB (dynalite) ---
{
  const { startDynalite, dynamoClient } = await import('../../test/helpers/dynalite.ts');
  const { createTable, dynamodbStore } = await import('../../src/stores/dynamodb/index.ts');
  const { ScanCommand } = await import('@aws-sdk/client-dynamodb');
  const server = await startDynalite();
  const client = dynamoClient(server.endpoint);
  try {
    await createTable({ client, table: 'idem', timeToLive: false }); // dynalite has no TTL API
    await fill(dynamodbStore({ client, table: 'idem' }));
    let total = 0;
    let items = 0;
    let start: Record<string, unknown> | undefined;
    do {
      const page = await client.send(
        new ScanCommand({ TableName: 'idem', ExclusiveStartKey: start as never }),
      );
      for (const item of page.Items ?? []) {
        total += itemBytes(item as Record<string, { S?: string; N?: string }>);
        items++;
      }
      start = page.LastEvaluatedKey;
    } while (start);
    rows.push([
      'DynamoDB',
      per(total, items),
      `billed item size (names + values, numbers by significant digits), mean of ${items} items`,
    ]);
  } finally {
    client.destroy();
    await server.stop();
  }
}
await upstream.close();

/** DynamoDB's item size: UTF-8 names and strings; a number is 1 byte per 2 significant digits + 1. */
function itemBytes(item: Record<string, { S?: string; N?: string }>): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(item)) {
    bytes += Buffer.byteLength(name);
    if (value.S !== undefined) bytes += Buffer.byteLength(value.S);
    else if (value.N !== undefined) {
      const digits = value.N.replace(/^-/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
      bytes += Math.ceil(Math.max(1, digits.length) / 2) + 1;
    }
  }
  return bytes;
}

console.log(
  `${N} completed records (a ${BODY} B JSON answer with 3 headers, through idem serve's recording), bytes per record:\n`,
);
console.log('| store | bytes / record | measured as |\n|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);

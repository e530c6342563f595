/**
 * Run inside a temporary app that installed the packed tarball (test/package/consumer.test.ts):
 * the library through the package's public entries, as a consumer imports them. Prints one
 * `ok <what>` line per check; any failure throws (exit code 1).
 *
 *   node library.ts DIR [POSTGRES_URL REDIS_URL]
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import express from 'express';
import { createIdem, isIdemError, memoryStore, type Store } from 'idem';
import { idempotency } from 'idem/express';
import { postgresStore } from 'idem/postgres';
import { redisStore } from 'idem/redis';
import { sqliteStore } from 'idem/sqlite';
import pg from 'pg';

const [dir, pgUrl, redisUrl] = process.argv.slice(2) as [string, string?, string?];

// Every entry in the installed package's "exports" loads and exports something.
const { exports } = JSON.parse(readFileSync('node_modules/idem/package.json', 'utf8')) as {
  exports: Record<string, unknown>;
};
const entries = Object.keys(exports).filter((e) => e !== './package.json');
for (const entry of entries) {
  const loaded = (await import(`idem${entry.slice(1)}`)) as object;
  assert.ok(Object.keys(loaded).length > 0, `idem${entry.slice(1)} exports nothing`);
}
console.log(`ok ${entries.length} entries`);

async function runsOnce(name: string, store: Store): Promise<void> {
  const idem = createIdem({ store, ttl: '1m' });
  const key = idem.key('consumer', name, process.pid, Date.now());
  let runs = 0;
  const first = await idem.execute(key, () => ({ n: ++runs }), { input: { name } });
  const again = await idem.execute(key, () => ({ n: ++runs }), { input: { name } });
  assert.deepEqual([first.replayed, again.replayed, again.value, runs], [false, true, { n: 1 }, 1]);
  await assert.rejects(
    idem.execute(key, () => 0, { input: { other: true } }),
    (e) => isIdemError(e) && e.status === 422,
  );
  await store.close?.();
  console.log(`ok ${name}`);
}

await runsOnce('memory', memoryStore());
await runsOnce('sqlite', sqliteStore({ path: join(dir, 'library.db') }));
if (pgUrl && redisUrl) {
  const schema = `idem_consumer_${process.pid}`;
  try {
    await runsOnce('postgres', postgresStore({ connectionString: pgUrl, schema }));
  } finally {
    const pool = new pg.Pool({ connectionString: pgUrl });
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await pool.end();
  }
  await runsOnce('redis', redisStore({ url: redisUrl, prefix: `idem-consumer-${process.pid}:` }));
}

// Express middleware: a retried POST is answered from the store, the handler runs once.
let charges = 0;
const app = express();
app.use(express.json());
app.post(
  '/payments',
  idempotency({ idem: createIdem({ store: memoryStore() }), required: true }),
  (req, res) => {
    res.status(201).json({ id: `pay_${++charges}`, amount: req.body.amount });
  },
);
const server = app.listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/payments`;
const pay = () =>
  fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'idempotency-key': 'consumer-1',
      authorization: 'Bearer c',
    },
    body: JSON.stringify({ amount: 12 }),
  });
const a = await pay();
const b = await pay();
assert.deepEqual([a.status, b.status, b.headers.get('idempotent-replayed')], [201, 201, 'true']);
assert.deepEqual(await b.json(), await a.json());
assert.equal(charges, 1);
server.close();
console.log('ok express');

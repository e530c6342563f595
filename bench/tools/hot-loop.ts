/**
 * One idem workload in a loop and nothing else, to profile the engine without the baselines:
 *
 * ```
 * npx node --cpu-prof --cpu-prof-dir=/tmp/prof --conditions=idem-source bench/tools/hot-loop.ts sqlite fresh 4
 * npx node bench/tools/profile-summary.ts /tmp/prof/*.cpuprofile --focus claimAndRun,replay
 * ```
 *
 * Arguments: store (`memory` | `sqlite` | `postgres` | `redis`), workload (`fresh` | `replay`),
 * seconds, concurrent callers (default 1). Postgres and Redis calls pass `input`, as in the benchmark; their keys are cleaned up.
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdem, memoryStore, type Store } from 'idem';
import { sqliteStore } from 'idem/sqlite';
import { SERVICES } from '../lib/env.ts';
import { unlinkMatching } from '../lib/redis-keys.ts';
import { LEASE_MS, REPLAY_KEYS, send, TTL_MS } from '../lib/workload.ts';

const [storeName = 'sqlite', workload = 'fresh', seconds = '4', callers = '1'] = process.argv.slice(2);
if (
  !['memory', 'sqlite', 'postgres', 'redis'].includes(storeName) ||
  !['fresh', 'replay'].includes(workload)
) {
  console.error('usage: hot-loop.ts memory|sqlite|postgres|redis fresh|replay [seconds]');
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), 'idem-hot-'));
const name = `idem_hot_${process.pid}`;
let cleanup = async () => {};
let store: Store;
if (storeName === 'memory') store = memoryStore();
else if (storeName === 'sqlite') store = sqliteStore({ path: join(dir, 'hot.db') });
else if (storeName === 'postgres') {
  const { default: pg } = await import('pg');
  const { postgresStore } = await import('idem/postgres');
  const pool = new pg.Pool({ connectionString: SERVICES.postgres, max: 16 });
  store = postgresStore({ pool, schema: name });
  cleanup = async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
    await pool.end();
  };
} else {
  const { Redis } = await import('ioredis');
  const { redisStore } = await import('idem/redis');
  const client = new Redis(SERVICES.redis);
  store = redisStore({ client, prefix: name });
  cleanup = async () => {
    await unlinkMatching(client, `${name}:*`);
    client.disconnect();
  };
}
const input = storeName === 'postgres' || storeName === 'redis';
const opts = (n: number) => (input ? { input: { n } } : {});
const idem = createIdem({ store, ttl: TTL_MS, lease: LEASE_MS });
for (let i = 0; i < REPLAY_KEYS; i++) await idem.run(`replay:${i}`, () => send(i), opts(i));

const end = performance.now() + Number(seconds) * 1000;
let n = 0;
const cpu = process.cpuUsage();
const caller = async () => {
  while (performance.now() < end) {
    for (let j = 0; j < 10; j++) {
      const i = n++;
      if (workload === 'fresh') await idem.run(`fresh:${i}`, () => send(i), opts(i));
      else await idem.run(`replay:${i % REPLAY_KEYS}`, () => send(i), opts(i % REPLAY_KEYS));
    }
  }
};
await Promise.all(Array.from({ length: Number(callers) }, caller));
const used = process.cpuUsage(cpu);
console.log(
  `${storeName} ${workload} ×${callers}: ${Math.round(n / Number(seconds))} ops/s, ${((used.user + used.system) / n).toFixed(1)} µs CPU/op`,
);
await idem.close();
await cleanup();
rmSync(dir, { recursive: true, force: true });

/**
 * A/B of two engines on the same store, interleaved in one process: this checkout's
 * src/core/engine.ts against the one in another source tree (a copy with a patch applied, or
 * a git worktree of another commit). Only the engine differs; the store is this checkout's.
 *
 * ```
 * mkdir -p /tmp/idem-b && cp -r src package.json /tmp/idem-b/ && ln -s "$PWD/node_modules" /tmp/idem-b/node_modules
 * patch -d /tmp/idem-b -p1 < bench/results/engine-fastpaths.diff
 * npx node --conditions=idem-source bench/tools/engine-ab.ts /tmp/idem-b/src memory
 * npx node --conditions=idem-source bench/tools/engine-ab.ts /tmp/idem-b/src redis
 * ```
 *
 * Arguments: the other tree's `src` folder, then the store (`memory` | `sqlite` | `redis`).
 * Redis calls pass `input`, as in the benchmark. Prints ops/s, p50 and client CPU per call.
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createIdem, memoryStore, type Store } from 'idem';
import { sqliteStore } from 'idem/sqlite';
import { SERVICES } from '../lib/env.ts';
import { measure } from '../lib/measure.ts';
import { unlinkMatching } from '../lib/redis-keys.ts';
import { fmtOps, fmtUs } from '../lib/report.ts';
import {
  FINGERPRINT,
  idAt,
  LEASE_MS,
  REPLAY_KEYS,
  randomIds,
  send,
  storeOnly,
  TTL_MS,
} from '../lib/workload.ts';

const [other, storeName = 'memory'] = process.argv.slice(2);
if (!other || !['memory', 'sqlite', 'redis'].includes(storeName)) {
  console.error('usage: engine-ab.ts <other-src-dir> [memory|sqlite|redis]');
  process.exit(2);
}
const { createIdem: createOther } = (await import(resolve(other, 'core/engine.ts'))) as {
  createIdem: typeof createIdem;
};

const dir = mkdtempSync(join(tmpdir(), 'idem-ab-'));
const prefix = `idem_ab_${process.pid}`;
let cleanup = async () => {};
let store: Store;
if (storeName === 'memory') store = memoryStore();
else if (storeName === 'sqlite') store = sqliteStore({ path: join(dir, 'ab.db') });
else {
  const { Redis } = await import('ioredis');
  const { redisStore } = await import('idem/redis');
  const client = new Redis(SERVICES.redis);
  store = redisStore({ client, prefix });
  cleanup = async () => {
    await unlinkMatching(client, `${prefix}:*`);
    client.disconnect();
  };
}
const input = storeName === 'redis';
const opts = (n: number) => (input ? { input: { n } } : {});
const engines = {
  'this checkout': createIdem({ store, ttl: TTL_MS, lease: LEASE_MS }),
  [`${other}`]: createOther({ store, ttl: TTL_MS, lease: LEASE_MS }),
};
for (const [name, idem] of Object.entries(engines)) {
  for (let i = 0; i < REPLAY_KEYS; i++) await idem.run(`${name}:replay:${i}`, () => send(i), opts(i));
}
const api = storeOnly(store, input ? FINGERPRINT : '');
// SQLite's B-tree cares where ids land: fresh ids as random as the engine's record ids
const sqliteIds = storeName === 'sqlite' ? randomIds(100_000) : [];
const apiId = (concurrency: number, i: number) =>
  storeName === 'sqlite' ? idAt(sqliteIds, i) : `api:${concurrency}:${i}`;
for (let i = 0; i < REPLAY_KEYS; i++) await api.fresh(`api:replay:${i}`);

const concurrencies = storeName === 'redis' ? [1, 16] : [1];
for (const concurrency of concurrencies) {
  for (const workload of ['fresh', 'replay']) {
    const key = (name: string, i: number) =>
      workload === 'fresh' ? `${name}:${concurrency}:${i}` : `${name}:replay:${i % REPLAY_KEYS}`;
    const results = await measure(
      [
        {
          name: 'store API only',
          op: (i) =>
            workload === 'fresh'
              ? api.fresh(apiId(concurrency, i))
              : api.replay(`api:replay:${i % REPLAY_KEYS}`),
        },
        ...Object.entries(engines).map(([name, idem]) => ({
          name,
          op: (i: number) => idem.run(key(name, i), () => send(i), opts(i % REPLAY_KEYS)),
        })),
      ],
      { concurrency, durationMs: 3000, rounds: 3, warmupMs: 300 },
    );
    for (const r of results) {
      console.log(
        `${storeName} ${workload} ×${concurrency}  ${r.name.padEnd(32)} ${fmtOps(r.opsPerSec).padStart(9)} ops/s  p50 ${fmtUs(r.p50Us).padStart(9)}  CPU/op ${fmtUs(r.cpuUs).padStart(9)}${r.errors ? `  ${r.errors} errors: ${r.firstError}` : ''}`,
      );
    }
  }
}
await cleanup();
rmSync(dir, { recursive: true, force: true });
process.exit(0);

/**
 * Where `idem.run` on Redis spends client CPU beyond the store API: the same fresh-key and replay
 * workloads through the store API alone, `idem.run` without `input`, and `idem.run` with it,
 * interleaved in one process (CPU per call = process CPU ÷ calls, so the kernel's share of each
 * socket write and read is counted, as in the benchmark):
 *
 * ```
 * npx node --conditions=idem-source bench/tools/redis-layers.ts [callers] [ms per case] [rounds]
 * ```
 *
 * @module
 */

import { createIdem } from 'idem';
import { redisStore } from 'idem/redis';
import { Redis } from 'ioredis';
import { SERVICES } from '../lib/env.ts';
import { encodedOutcome, LEASE_MS, send, TTL_MS, token } from '../lib/workload.ts';

const [callers = 16, ms = 1500, rounds = 3] = process.argv.slice(2).map(Number);
const prefix = `idem_layers_${process.pid}`;
const client = new Redis(SERVICES.redis);
const store = redisStore({ client, prefix });
const idem = createIdem({ store, ttl: TTL_MS, lease: LEASE_MS });

let seq = 0;
const cases: Record<string, (i: number) => Promise<unknown>> = {
  'store API (claim + complete)': async (i) => {
    const id = `s${i}-${seq}`;
    const t = token();
    await store.claim({ id, fingerprint: '', leaseMs: LEASE_MS, ttlMs: TTL_MS, token: t });
    await store.complete(id, t, encodedOutcome(i), TTL_MS);
  },
  'idem.run, no input': (i) => idem.run(`a${i}-${seq}`, () => send(i)),
  'idem.run, input { n }': (i) => idem.run(`b${i}-${seq}`, () => send(i), { input: { n: i } }),
};

async function measure(fn: (i: number) => Promise<unknown>) {
  seq++;
  let n = 0;
  const end = performance.now() + ms;
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < end) await fn(n++);
    }),
  );
  const used = process.cpuUsage(cpu);
  return { ops: (n * 1000) / ms, cpu: (used.user + used.system) / n };
}

const results: Record<string, { ops: number; cpu: number }[]> = {};
for (const name of Object.keys(cases)) results[name] = [];
for (let r = 0; r < rounds; r++)
  for (const [name, fn] of Object.entries(cases)) results[name]?.push(await measure(fn));
for (const [name, rs] of Object.entries(results)) {
  const cpu = rs.map((x) => x.cpu).sort((a, b) => a - b);
  const ops = rs.map((x) => x.ops).sort((a, b) => a - b);
  console.log(
    `${name.padEnd(30)} ${Math.round(ops[ops.length >> 1]!)
      .toLocaleString()
      .padStart(
        8,
      )}/s  ${cpu[0]!.toFixed(1).padStart(6)} µs CPU (min) ${cpu[cpu.length >> 1]!.toFixed(1).padStart(6)} (median)`,
  );
}
await idem.close();
let cursor = '0';
do {
  const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
  cursor = next;
  if (keys.length) await client.unlink(...keys);
} while (cursor !== '0');
client.disconnect();

/**
 * Where a fresh `idem.run` on Redis spends its time, client and server: the store API alone
 * (claim + complete, what the engine sends) and `idem.run` with `input`, in rounds of 1.5 s
 * from a cold start, alternating, in one process. Per round: ops/s, this process's CPU per call
 * (user + system, so the kernel's share of each socket write and read is counted, as in the
 * benchmark), Redis's own CPU per call (`INFO cpu`) and the commands it ran per call
 * (`INFO commandstats`). The first rounds show the warm-up (JIT, heap sizing); the last ones
 * the steady state.
 *
 * ```
 * npx node --conditions=idem-source bench/tools/redis-layers.ts [callers=16] [rounds=6]
 * ```
 *
 * @module
 */
import { createIdem } from 'idem';
import { redisStore } from 'idem/redis';
import { Redis } from 'ioredis';
import { SERVICES } from '../lib/env.ts';
import { unlinkMatching } from '../lib/redis-keys.ts';
import { encodedOutcome, FINGERPRINT, LEASE_MS, send, TTL_MS, token } from '../lib/workload.ts';

const [callers = 16, rounds = 6] = process.argv.slice(2).map(Number);
const ROUND_MS = 1500;
const prefix = `idem_layers_${process.pid}`;
const client = new Redis(SERVICES.redis);
const store = redisStore({ client, prefix });
const idem = createIdem({ store, ttl: TTL_MS, lease: LEASE_MS });
const tok = token();
const outcome = encodedOutcome(123456);

const cases: Record<string, (id: string, i: number) => Promise<unknown>> = {
  'store API': async (id) => {
    await store.claim({ id, fingerprint: FINGERPRINT, leaseMs: LEASE_MS, ttlMs: TTL_MS, token: tok });
    await store.complete(id, tok, outcome, TTL_MS);
  },
  'idem.run': (id, i) => idem.run(id, () => send(i), { input: { n: i } }),
};

/** Redis's CPU seconds so far, and its per-command call counts. */
async function server() {
  const cpu = await client.info('cpu');
  const seconds = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(cpu)?.[1] ?? 0);
  const stats = await client.info('commandstats');
  const calls: Record<string, number> = {};
  for (const m of stats.matchAll(/cmdstat_(\w+):calls=(\d+)/g)) calls[m[1]!] = Number(m[2]);
  return { cpu: seconds('used_cpu_user') + seconds('used_cpu_sys'), calls };
}

for (let round = 0; round < rounds; round++) {
  for (const [name, fn] of Object.entries(cases)) {
    const before = await server();
    let n = 0;
    const end = performance.now() + ROUND_MS;
    const cpu = process.cpuUsage();
    await Promise.all(
      Array.from({ length: callers }, async () => {
        while (performance.now() < end) {
          const i = n++;
          await fn(`${name === 'idem.run' ? 'r' : 's'}${round}:${i}`, i);
        }
      }),
    );
    const used = process.cpuUsage(cpu);
    const after = await server();
    const commands = Object.entries(after.calls)
      .map(([c, k]) => [c, (k - (before.calls[c] ?? 0)) / n] as const)
      .filter(([c, per]) => per >= 0.5 && c !== 'info')
      .map(([c, per]) => `${c} ${per.toFixed(1)}`)
      .join(', ');
    console.log(
      `round ${round + 1} ${name.padEnd(9)} ${Math.round((n * 1000) / ROUND_MS)
        .toLocaleString()
        .padStart(
          7,
        )}/s  client ${((used.user + used.system) / n).toFixed(1).padStart(5)} µs  redis ${(((after.cpu - before.cpu) * 1e6) / n).toFixed(1).padStart(5)} µs  per call (${commands})`,
    );
  }
}
await idem.close();
await unlinkMatching(client, `${prefix}:*`);
client.disconnect();

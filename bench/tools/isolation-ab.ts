/**
 * The same Redis implementations measured in this process and each in a process of its own
 * (bench/lib/isolated.ts), interleaved in one run: what the isolation changes.
 *
 * ```
 * node --conditions=idem-source bench/tools/isolation-ab.ts [callers=1,16] [impls=raw-io,idem,pt,ni] [ms=3000]
 * ```
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { SERVICES } from '../lib/env.ts';
import { type Isolated, startIsolated } from '../lib/isolated.ts';
import { type Case, measure } from '../lib/measure.ts';
import { unlinkMatching } from '../lib/redis-keys.ts';
import { type RedisImpl, redisCase } from '../sections/redis-cases.ts';

const callers = (process.argv[2] ?? '1,16').split(',').map(Number);
const impls = (process.argv[3] ?? 'raw-io,idem,pt,ni').split(',') as RedisImpl[];
const ms = Number(process.argv[4] ?? 3000);
const url = SERVICES.redis;
const prefix = `idem_iso_${process.pid}_${randomBytes(3).toString('hex')}`;
const kids: Isolated[] = [];
const local: Awaited<ReturnType<typeof redisCase>>[] = [];
try {
  const cases: Record<'fresh' | 'replay', Case[]> = { fresh: [], replay: [] };
  // measure() numbers each run's ops from 0, a child goes on counting: keep fresh keys fresh
  let base = 0;
  for (const impl of impls) {
    const kid = await startIsolated(new URL('../sections/redis-cases.ts', import.meta.url), 'redisCase', {
      impl,
      prefix: `${prefix}_child`,
      url,
    });
    kids.push(kid);
    const here = await redisCase({ impl, prefix: `${prefix}_here`, url });
    local.push(here);
    for (const op of ['fresh', 'replay'] as const) {
      const run = here.ops[op]!;
      cases[op].push({ name: `${impl} in-process`, op: (i) => run(base + i) });
      cases[op].push(kid.case(op, { name: `${impl} own process` }));
    }
  }
  for (const concurrency of callers) {
    base += 100_000_000;
    for (const op of ['fresh', 'replay'] as const) {
      const rows = await measure(cases[op], { concurrency, durationMs: ms, rounds: 3, warmupMs: 1500 });
      for (const r of rows) {
        console.log(
          `${op.padEnd(6)} c${String(concurrency).padEnd(3)} ${r.name.padEnd(22)} ${Math.round(r.opsPerSec).toString().padStart(7)}/s  p50 ${r.p50Us.toFixed(0).padStart(5)} µs  CPU ${r.cpuUs.toFixed(1).padStart(6)} µs/op  errors ${r.errors}`,
        );
      }
    }
  }
} finally {
  await Promise.allSettled(kids.map((k) => k.close()));
  await Promise.allSettled(local.map((l) => l.close()));
  const client = new Redis(url);
  await unlinkMatching(client, `${prefix}*`);
  client.disconnect();
}

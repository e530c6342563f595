/**
 * What each idem script costs Redis itself, next to the plain commands the peers send: N calls
 * in pipelines of 16 on fresh keys (claim, then complete of those keys) and on one completed key
 * (a replay is a claim that finds it), then `SET NX PX` + `SET PX` and `GET` for comparison.
 * Reads `INFO commandstats` around each step, so it reports Redis's command time per call (the
 * script's own `EVALSHA` time includes the commands it runs; they are listed apart too). The
 * client's speed does not enter these figures; run it against a Redis nothing else uses.
 *
 * ```
 * npx node --conditions=idem-source bench/tools/redis-lua-cost.ts [calls=100000]
 * ```
 *
 * @module
 */
import { Redis } from 'ioredis';
import { SCRIPTS } from '../../src/stores/redis/lua.generated.ts';
import { SERVICES } from '../lib/env.ts';
import { unlinkMatching } from '../lib/redis-keys.ts';
import { encodedOutcome, FINGERPRINT, LEASE_MS, TTL_MS, token } from '../lib/workload.ts';

const calls = Number(process.argv[2] ?? 100_000);
const prefix = `idem_luacost_${process.pid}`;
const redis = new Redis(SERVICES.redis);
const tok = token();
const outcome = encodedOutcome(123456);
const scope = 'Qm9vc2NvcGVoYXNoMDEyMw';

async function stats(): Promise<Map<string, { calls: number; usec: number }>> {
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of (await redis.info('commandstats')).matchAll(/cmdstat_([a-z|]+):calls=(\d+),usec=(\d+)/g)) {
    out.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return out;
}

/** Runs `command(i)` for i < calls in pipelines of 16 and prints Redis's time per call. */
async function step(name: string, command: (p: ReturnType<Redis['pipeline']>, i: number) => void) {
  const before = await stats();
  for (let i = 0; i < calls; i += 16) {
    const p = redis.pipeline();
    for (let j = i; j < Math.min(calls, i + 16); j++) command(p, j);
    const results = await p.exec();
    const failed = results?.find(([e]) => e);
    if (failed) throw failed[0];
  }
  const after = await stats();
  const parts: string[] = [];
  let total = 0;
  for (const [cmd, a] of after) {
    const b = before.get(cmd) ?? { calls: 0, usec: 0 };
    if (a.calls - b.calls < calls / 2 || cmd === 'info') continue;
    const per = (a.usec - b.usec) / calls;
    if (cmd.startsWith('eval') || ['set', 'get'].includes(cmd)) total += per;
    parts.push(`${cmd} ${per.toFixed(2)}`);
  }
  console.log(`${name.padEnd(34)} ${total.toFixed(2).padStart(6)} µs per call   (${parts.join(', ')})`);
}

const sha = (name: keyof typeof SCRIPTS) => SCRIPTS[name].sha1;
try {
  for (const name of ['claim', 'complete'] as const) await redis.script('LOAD', SCRIPTS[name].lua);
  const key = (i: number) => `${prefix}:{${i}}`;
  const claim = (i: number) => [sha('claim'), 1, key(i), FINGERPRINT, tok, LEASE_MS, TTL_MS, scope] as const;
  await step('idem claim, new key', (p, i) => p.evalsha(...claim(i)));
  await step('idem complete', (p, i) =>
    p.evalsha(sha('complete'), 1, key(i), tok, outcome, '', TTL_MS, 'PUBLISH'),
  );
  await step('idem claim of a completed key', (p, i) => p.evalsha(...claim(i % 1000)));
  const plain = (i: number) => `${prefix}:plain:${i}`;
  await step('SET NX PX (a peer’s claim)', (p, i) =>
    p.set(plain(i), `p${FINGERPRINT}${tok}`, 'PX', TTL_MS, 'NX'),
  );
  await step('SET PX (a peer’s complete)', (p, i) => p.set(plain(i), outcome, 'PX', TTL_MS));
  await step('GET (a peer’s replay read)', (p, i) => p.get(plain(i % 1000)));
} finally {
  await unlinkMatching(redis, `${prefix}*`);
  redis.disconnect();
}

/**
 * The store-time rule: leases are judged by Redis TIME, so processes whose clocks are minutes
 * apart still agree on who holds a key and when a lease is over.
 */
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix } from './fixtures/redis-suite.ts';

const up = await serviceAvailable('redis');
const run = promisify(execFile);
const CHILD = new URL('./fixtures/redis-child.ts', import.meta.url).pathname;
const SKEW = new URL('./fixtures/redis-skew-clock.ts', import.meta.url).href;
const prefix = uniqueName('idem_redis');
const arg = { url: SERVICES.redis, prefix };

/** Runs one store operation in a child process whose clock is off by `skewMs`. */
async function inChild(skewMs: number, op: string, ...args: unknown[]) {
  const { stdout } = await run(
    process.execPath,
    ['--conditions=idem-source', '--import', SKEW, CHILD, JSON.stringify({ arg, op, args })],
    { env: { ...process.env, IDEM_CLOCK_SKEW_MS: String(skewMs) } },
  );
  // biome-ignore lint/suspicious/noExplicitAny: parsed child output
  return JSON.parse(stdout) as { appNow: number; result: any };
}

describe.skipIf(!up)('redis store: time comes from Redis, not from the app', () => {
  afterAll(async () => {
    const admin = new Redis(SERVICES.redis);
    await deletePrefix(admin, prefix);
    await admin.quit();
  });

  it('processes 10 minutes ahead and behind agree on a 1.5 s lease', async () => {
    const ahead = 10 * 60_000;
    const behind = -10 * 60_000;
    const claim = (token: string) => ({
      id: 'lease',
      fingerprint: 'f',
      leaseMs: 1_500,
      ttlMs: 60_000,
      token,
    });

    // A runs 10 minutes fast and takes the key.
    const a = await inChild(ahead, 'claim', claim('A'));
    expect(a.result).toMatchObject({ status: 'acquired', attempt: 1 });
    expect(a.appNow - Date.now()).toBeGreaterThan(ahead - 5_000); // the skew is real
    expect(Math.abs(a.result.leaseUntil - 1_500 - Date.now())).toBeLessThan(5_000); // the lease is not

    // C runs 10 minutes fast too: by its clock A's lease ended long ago, yet it may not take over.
    const c = await inChild(ahead, 'claim', claim('C'));
    expect(c.result).toMatchObject({ status: 'existing', record: { token: 'A' } });
    expect(c.result.record.leaseUntil - c.result.now).toBeGreaterThan(0);
    expect(c.result.record.leaseUntil - c.result.now).toBeLessThanOrEqual(1_500);

    // B runs 10 minutes slow: by its clock the lease has 10 minutes left, yet once Redis says it
    // is over, B takes over with attempt 2 and A is fenced off.
    await sleep(1_700);
    const b = await inChild(behind, 'claim', claim('B'));
    expect(b.appNow - Date.now()).toBeLessThan(behind + 5_000);
    expect(b.result).toMatchObject({ status: 'acquired', attempt: 2, takeover: true });
    expect((await inChild(ahead, 'complete', 'lease', 'A', 'late', 60_000)).result).toBe(false);

    // B renews on its slow clock; the new lease is measured on Redis time.
    const renewed = await inChild(behind, 'renew', 'lease', 'B', 1_500);
    expect(Math.abs(renewed.result - 1_500 - Date.now())).toBeLessThan(5_000);
    expect((await inChild(behind, 'complete', 'lease', 'B', 'done', 60_000)).result).toBe(true);
    const got = await inChild(ahead, 'get', 'lease');
    expect(got.result).toMatchObject({ state: 'completed', outcome: 'done', attempt: 2 });
    expect(Math.abs(got.result.expiresAt - 60_000 - Date.now())).toBeLessThan(5_000);
  });
});

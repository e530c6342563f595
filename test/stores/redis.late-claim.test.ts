/**
 * A claim sent to a frozen Redis times out for the caller (503) but lands when Redis wakes
 * up. The engine releases the token it sent, so the key is free again at once: the next
 * call runs as attempt 1, not as a takeover with mayHaveRun after a lease. Runs on a
 * redis-server of our own (never the shared 6379).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIdem } from '../../src/core/engine.ts';
import { StoreUnavailableError } from '../../src/core/errors.ts';
import { redisStore } from '../../src/stores/redis/index.ts';
import { type RedisServer, redisBinariesAvailable, startRedis } from '../helpers/redis-cluster.ts';
import { until } from './fixtures/redis-suite.ts';

const binaries = await redisBinariesAvailable();
const TIMEOUT = 300;

describe.skipIf(!binaries)('redis: a claim that lands after its timeout', () => {
  let server: RedisServer;
  let admin: Redis;

  beforeAll(async () => {
    server = await startRedis(6393);
    admin = new Redis(server.url);
  });
  afterAll(async () => {
    admin?.disconnect();
    await server?.stop();
  });

  it('is released once Redis answers again: nothing ran, the next call is attempt 1', async () => {
    const store = redisStore({ url: server.url, prefix: 'late', commandTimeout: TIMEOUT });
    const events: string[] = [];
    const idem = createIdem({ store, lease: '30s', onEvent: (e) => events.push(e.type) });
    const { recordId } = idem.ids('pay');
    // connected, scripts defined: the first call also connects, which a loaded machine may
    // take longer than the 300 ms command timeout to do, so the warm-up may take a few tries
    for (let i = 0; ; i++) {
      const warm = await store.get('warm-up').then(
        () => true,
        (e: unknown) => (i < 20 && e instanceof StoreUnavailableError ? false : Promise.reject(e)),
      );
      if (warm) break;
    }
    let runs = 0;
    server.signal('SIGSTOP');
    try {
      const started = performance.now();
      const err = await idem.run('pay', () => ++runs).catch((e) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(performance.now() - started).toBeLessThan(TIMEOUT + 250);
      await sleep(200);
    } finally {
      server.signal('SIGCONT');
    }
    // The claim sat in the socket and lands now; the release the engine sends follows it.
    expect(await until(() => events.includes('released'), 5_000)).toBe(true);
    // released into the marker of the guard window: nobody holds it
    expect(await admin.hmget(`late:{${recordId}}`, 't', 'a')).toEqual(['', '0']);
    const r = await idem.execute('pay', (ctx) => ({ attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun }));
    expect(r).toMatchObject({ replayed: false, value: { attempt: 1, mayHaveRun: false } });
    expect(runs).toBe(0);
    await idem.close();
  });
});

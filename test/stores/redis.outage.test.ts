/**
 * Outages on a redis-server of our own (never the shared 6379): a crashed or frozen Redis
 * makes every operation reject with StoreUnavailableError within commandTimeout, and the
 * same store objects recover fully once Redis is back, without restarting anything.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/core/errors.ts';
import type { Store } from '../../src/core/store.ts';
import { redisStore } from '../../src/stores/redis/index.ts';
import { type RedisServer, redisBinariesAvailable, startRedis } from '../helpers/redis-cluster.ts';
import { until } from './fixtures/redis-suite.ts';

const binaries = await redisBinariesAvailable();
const TIMEOUT = 500;
const SLACK = 250;

const claim = (store: Store, id: string) =>
  store.claim({ id, fingerprint: '', leaseMs: 10_000, ttlMs: 60_000, token: randomUUID() });

/** Runs `op` and answers how long it took to reject, failing if it resolved. */
async function rejection(op: () => Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  try {
    await op();
  } catch (error) {
    return { ms: performance.now() - start, error };
  }
  throw new Error('expected the operation to reject');
}

describe.skipIf(!binaries)('redis store outages', () => {
  let server: RedisServer;
  let userClient: Redis;
  let stores: { label: string; store: Store }[];

  beforeAll(async () => {
    server = await startRedis(6390);
    // ioredis defaults on the user's client: offline queue on, 20 retries per request
    userClient = new Redis(server.url);
    userClient.on('error', () => {});
    stores = [
      { label: 'url', store: redisStore({ url: server.url, prefix: 'o', commandTimeout: TIMEOUT }) },
      { label: 'client', store: redisStore({ client: userClient, prefix: 'o', commandTimeout: TIMEOUT }) },
    ];
  });
  afterAll(async () => {
    for (const { store } of stores ?? []) await store.close?.();
    userClient?.disconnect();
    await server?.stop();
  });

  it('crash: every operation rejects with StoreUnavailableError within commandTimeout', async () => {
    for (const { label, store } of stores) {
      expect(await claim(store, `before-${label}`)).toMatchObject({ status: 'acquired' });
    }
    server.signal('SIGKILL');
    await sleep(50);
    for (const { label, store } of stores) {
      const ops = [
        () => claim(store, `ghost-${label}`),
        () => store.complete(`before-${label}`, 't', 'x', 1000),
        () => store.release(`before-${label}`, 't'),
        () => store.renew(`before-${label}`, 't', 1000),
        () => store.get(`before-${label}`),
      ];
      const results = await Promise.all(ops.map(rejection));
      for (const { ms, error } of results) {
        expect(error, label).toBeInstanceOf(StoreUnavailableError);
        expect(ms, label).toBeLessThan(TIMEOUT + SLACK);
      }
    }
  });

  it('restart: the same store objects recover, and nothing rejected during the outage runs later', async () => {
    const woke: string[] = [];
    for (const { label, store } of stores) store.subscribe!('after', () => woke.push(label));
    await server.start();
    for (const { label, store } of stores) {
      expect(
        await until(
          async () =>
            await store.get('x').then(
              () => true,
              () => false,
            ),
          5_000,
        ),
        label,
      ).toBe(true);
      const r = await claim(store, `fresh-${label}`);
      expect(r, label).toMatchObject({ status: 'acquired', attempt: 1 }); // no persistence: all new
      if (r.status === 'acquired') expect(await store.release(`fresh-${label}`, 'nope')).toBe(false);
    }
    const admin = new Redis(server.url);
    await sleep(300);
    expect(await admin.keys('o:{ghost-*')).toEqual([]); // rejected claims were never queued for later
    // subscribers came back too: a completion wakes both stores' listeners
    await until(
      async () => Number(((await admin.pubsub('NUMSUB', 'o:{after}')) as unknown[])[1]) >= 2,
      5_000,
    );
    const owner = stores[0]!.store;
    const token = randomUUID();
    await owner.claim({ id: 'after', fingerprint: '', leaseMs: 10_000, ttlMs: 60_000, token });
    await claim(stores[1]!.store, 'after'); // a waiter: the record is marked awaited
    await owner.complete('after', token, 'v', 60_000);
    expect(await until(() => woke.length === 2)).toBe(true);
    expect(woke.sort()).toEqual(['client', 'url']);
    await admin.quit();
  });

  it('freeze: a server that stops answering yields StoreUnavailableError within commandTimeout', async () => {
    const { store } = stores[0]!;
    const closing = redisStore({ url: server.url, prefix: 'o', commandTimeout: TIMEOUT });
    expect(await store.get('nothing')).toBeUndefined();
    expect(await closing.get('nothing')).toBeUndefined();
    server.signal('SIGSTOP');
    try {
      const { ms, error } = await rejection(() => store.get('nothing'));
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(ms).toBeLessThan(TIMEOUT + SLACK);
      const start = performance.now();
      await closing.close?.(); // close does not hang on a frozen server either
      expect(performance.now() - start).toBeLessThan(TIMEOUT + SLACK);
    } finally {
      server.signal('SIGCONT');
    }
    expect(
      await until(
        async () =>
          await store.get('nothing').then(
            () => true,
            () => false,
          ),
        5_000,
      ),
    ).toBe(true);
  });

  it('a store created while Redis is down answers StoreUnavailableError, then works once it is up', async () => {
    server.signal('SIGKILL');
    await sleep(50);
    const late = redisStore({ url: server.url, prefix: 'o', commandTimeout: TIMEOUT });
    const { ms, error } = await rejection(() => late.get('x'));
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(ms).toBeLessThan(TIMEOUT + SLACK);
    await server.start();
    expect(
      await until(
        async () =>
          await claim(late, 'late').then(
            () => true,
            () => false,
          ),
        5_000,
      ),
    ).toBe(true);
    await late.close?.();
  });
});

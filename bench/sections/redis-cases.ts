/**
 * The Redis section's competitors, each built on its own connection(s) so that it can run in a
 * process of its own (bench/lib/isolated.ts). Every implementation has a `fresh` op (a new key
 * per call: claim, run, complete) and a `replay` op (one of REPLAY_KEYS completed keys), and
 * seeds its replay keys when built.
 *
 * @module
 */
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { CachePersistenceLayer } from '@aws-lambda-powertools/idempotency/cache';
import { Idempotency } from '@node-idempotency/core';
import { RedisStorageAdapter } from '@node-idempotency/storage-adapter-redis';
import { createClient } from '@redis/client';
import { createIdem } from 'idem';
import { redisStore } from 'idem/redis';
import { Redis } from 'ioredis';
import type { CaseSet } from '../lib/isolated.ts';
import {
  encodedOutcome,
  FINGERPRINT,
  LEASE_MS,
  REPLAY_KEYS,
  send,
  storeOnly,
  TTL_MS,
  token,
} from '../lib/workload.ts';

/** The implementations, by the short names the section uses. */
export type RedisImpl = 'raw-io' | 'raw-nr' | 'raw-r4' | 'api' | 'idem' | 'pt' | 'ni';

type LambdaContext = Parameters<IdempotencyConfig['registerLambdaContext']>[0];

/**
 * Powertools' `makeIdempotent` over its CachePersistenceLayer, driven outside Lambda: the lease is
 * the "remaining time" of a stand-in Lambda context.
 *
 * @example
 * const run = powertools(client, 'bench_pt', async (p: { n: number }) => send(p.n));
 */
export function powertools<P, R>(
  client: ConstructorParameters<typeof CachePersistenceLayer>[0]['client'],
  keyPrefix: string,
  fn: (p: P) => Promise<R>,
) {
  const config = new IdempotencyConfig({ expiresAfterSeconds: TTL_MS / 1000 });
  config.registerLambdaContext({ getRemainingTimeInMillis: () => LEASE_MS } as unknown as LambdaContext);
  const persistenceStore = new CachePersistenceLayer({ client });
  return makeIdempotent(fn, { persistenceStore, config, keyPrefix });
}

/**
 * @node-idempotency/core as its README shows: onRequest → action → onResponse.
 *
 * @example
 * const ni = nodeIdempotency(adapter, 'bench_ni');
 * await ni(`k1`, 1, () => send(1));
 */
export function nodeIdempotency(adapter: RedisStorageAdapter, prefix: string, wait = false) {
  const lib = new Idempotency(adapter, {
    cacheKeyPrefix: prefix,
    cacheTTLMS: TTL_MS,
    ...(wait ? { inProgressStrategy: { wait: true } } : {}),
  });
  return async (key: string, n: number, action: () => Promise<unknown>) => {
    const req = { method: 'POST', path: '/bench', headers: { 'idempotency-key': key }, body: { n } };
    const cached = await lib.onRequest(req);
    if (cached) return cached.body;
    const value = await action();
    await lib.onResponse(req, { body: value });
    return value;
  };
}

/** Raw clients: SET NX PX (claim) + SET PX (complete) for a fresh key, GET for a replay. */
const inProgress = () => JSON.stringify({ s: 'p', f: FINGERPRINT, t: token(), a: 1, l: Date.now() });

/**
 * Builds one implementation on its own connection(s) and seeds its replay keys.
 *
 * @example
 * const set = await redisCase({ impl: 'idem', prefix: 'idem_bench_1', url: 'redis://127.0.0.1:6379' });
 * await set.ops.fresh!(0);
 */
export async function redisCase(args: { impl: RedisImpl; prefix: string; url: string }): Promise<CaseSet> {
  const { impl, prefix, url } = args;
  let runs = 0;
  const counted = (n: number) => () => {
    runs++;
    return send(n);
  };
  const outcome = encodedOutcome(123456);
  let fresh: (i: number) => Promise<unknown>;
  let replay: (k: number) => Promise<unknown>;
  let close: () => Promise<unknown>;

  if (impl === 'raw-io' || impl === 'api' || impl === 'idem') {
    const client = new Redis(url);
    close = async () => client.disconnect();
    if (impl === 'raw-io') {
      const p = `${prefix}_rawio`;
      fresh = async (i) => {
        if ((await client.set(`${p}:${i}`, inProgress(), 'PX', TTL_MS, 'NX')) !== 'OK')
          throw new Error('not fresh');
        await client.set(`${p}:${i}`, outcome, 'PX', TTL_MS);
      };
      replay = (k) => client.get(`${p}:replay:${k}`);
      for (let k = 0; k < REPLAY_KEYS; k++) await client.set(`${p}:replay:${k}`, outcome, 'PX', TTL_MS);
    } else {
      const store = redisStore({ client, prefix: `${prefix}_idem` });
      close = async () => {
        await store.close?.();
        client.disconnect();
      };
      if (impl === 'api') {
        const api = storeOnly(store, FINGERPRINT);
        fresh = (i) => api.fresh(`api:${i}`);
        replay = (k) => api.replay(`api:replay:${k}`);
        for (let k = 0; k < REPLAY_KEYS; k++) await api.fresh(`api:replay:${k}`);
      } else {
        const idem = createIdem({ store, ttl: TTL_MS, lease: LEASE_MS });
        fresh = (i) => idem.run(`fresh:${i}`, () => send(i), { input: { n: i } });
        replay = (k) => idem.run(`replay:${k}`, counted(k), { input: { n: k } });
        for (let k = 0; k < REPLAY_KEYS; k++)
          await idem.run(`replay:${k}`, () => send(k), { input: { n: k } });
      }
    }
  } else if (impl === 'raw-nr' || impl === 'pt') {
    const client = createClient({ url });
    client.on('error', () => {});
    await client.connect();
    close = () => client.quit();
    if (impl === 'raw-nr') {
      const p = `${prefix}_rawnr`;
      fresh = async (i) => {
        if ((await client.set(`${p}:${i}`, inProgress(), { PX: TTL_MS, NX: true })) !== 'OK')
          throw new Error('not fresh');
        await client.set(`${p}:${i}`, outcome, { PX: TTL_MS });
      };
      replay = (k) => client.get(`${p}:replay:${k}`);
      for (let k = 0; k < REPLAY_KEYS; k++) await client.set(`${p}:replay:${k}`, outcome, { PX: TTL_MS });
    } else {
      const replayed = new Set<number>();
      const run = powertools(client, `${prefix}_pt`, async (p: { k: string; n: number }) => {
        if (p.k === 'replay' && replayed.has(p.n)) runs++;
        return send(p.n);
      });
      fresh = (i) => run({ k: 'fresh', n: i });
      replay = (k) => run({ k: 'replay', n: k });
      for (let k = 0; k < REPLAY_KEYS; k++) {
        await run({ k: 'replay', n: k });
        replayed.add(k);
      }
    }
  } else {
    const adapter = new RedisStorageAdapter({ url });
    await adapter.connect();
    close = () => adapter.disconnect();
    if (impl === 'raw-r4') {
      const p = `${prefix}_rawr4`;
      fresh = async (i) => {
        if (!(await adapter.setIfNotExists(`${p}:${i}`, inProgress(), { ttl: TTL_MS })))
          throw new Error('not fresh');
        await adapter.set(`${p}:${i}`, outcome, { ttl: TTL_MS });
      };
      replay = (k) => adapter.get(`${p}:replay:${k}`);
      for (let k = 0; k < REPLAY_KEYS; k++) await adapter.set(`${p}:replay:${k}`, outcome, { ttl: TTL_MS });
    } else {
      const ni = nodeIdempotency(adapter, `${prefix}_ni`);
      fresh = (i) => ni(`fresh:${i}`, i, () => send(i));
      replay = (k) => ni(`replay:${k}`, k, counted(k));
      for (let k = 0; k < REPLAY_KEYS; k++) await ni(`replay:${k}`, k, () => send(k));
    }
  }
  return {
    ops: { fresh, replay: (i) => replay(i % REPLAY_KEYS) },
    actionRuns: () => runs,
    close: async () => {
      await close();
    },
  };
}

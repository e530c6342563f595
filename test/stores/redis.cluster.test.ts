/**
 * The Redis store on a real 3-master Redis Cluster (started here on spare ports): the
 * transition tests, the conformance suite, and the slot layout.
 */
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createIdem } from 'idem';
import { testStore } from 'idem/testing';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../src/core/errors.ts';
import { redisStore } from '../../src/stores/redis/index.ts';
import { redisInspect } from '../../src/stores/redis/inspect.ts';
import { redact, storeAddress, storeFromSpec } from '../../src/stores/spec.ts';
import { type RedisCluster, redisBinariesAvailable, startCluster } from '../helpers/redis-cluster.ts';
import { REQUIRE_SERVICES, uniqueName } from '../helpers/services.ts';
import { deletePrefix, redisStoreSuite } from './fixtures/redis-suite.ts';

const binaries = await redisBinariesAvailable();
// Started in beforeAll, not at import, so collecting the tests never leaves servers behind.
let cluster: RedisCluster;
const nodes: { host: string; port: number }[] = [];
const connect = () => new Cluster(nodes);
const BIN = join(import.meta.dirname, '../../bin/idem.js');
const run = promisify(execFile);

if (binaries) {
  beforeAll(async () => {
    cluster = await startCluster();
    nodes.push(...cluster.nodes);
  });
  afterAll(async () => cluster?.stop());

  redisStoreSuite('cluster', connect);

  describe('redis store on Cluster: layout', () => {
    const prefix = uniqueName('idem_redis');
    let client: Cluster;
    let store: ReturnType<typeof redisStore>;
    beforeAll(() => {
      client = connect();
      store = redisStore({ client, prefix });
    });
    afterAll(async () => {
      await store.close?.();
      await deletePrefix(client, prefix);
      await client.quit();
    });

    it('spreads records over the masters, each record and its channel in one slot', async () => {
      const ids = Array.from({ length: 60 }, (_, i) => `spread-${i}`);
      for (const id of ids) {
        const token = randomUUID();
        await store.claim({ id, fingerprint: '', leaseMs: 5_000, ttlMs: 60_000, token });
        expect(await store.complete(id, token, `v${id}`, 60_000)).toBe(true);
      }
      const perNode = await Promise.all(
        client.nodes('master').map(async (n) => (await n.keys(`${prefix}:*`)).length),
      );
      expect(perNode.filter((n) => n > 0).length).toBe(3);
      expect(perNode.reduce((a, b) => a + b, 0)).toBe(ids.length);
      for (const id of ids.slice(0, 5)) {
        const slot = await client.cluster('KEYSLOT', `${prefix}:{${id}}`);
        expect(await client.cluster('KEYSLOT', id)).toBe(slot); // the hash tag is the id
        expect((await store.get(id))?.outcome).toBe(`v${id}`);
      }
    });

    it('inspect.get reads one record from the node that holds it; list pages over every master', async () => {
      const inspect = redisInspect({ client: async () => client, prefix, keyPrefix: '', timeoutMs: 2_000 });
      const ids = Array.from({ length: 12 }, (_, i) => `show-${i}`);
      const before = Date.now();
      for (const id of ids) {
        const token = randomUUID();
        await store.claim({ id, fingerprint: 'fp', leaseMs: 5_000, ttlMs: 60_000, token, scopeHash: 'c2M' });
        expect(await store.complete(id, token, 'done', 60_000)).toBe(true);
      }
      for (const id of ids) {
        const r = await inspect.get(id);
        expect(r).toMatchObject({
          id,
          state: 'completed',
          fingerprint: 'fp',
          outcomeBytes: 4,
          scopeHash: 'c2M',
        });
        expect(Math.abs(r!.createdAt - before)).toBeLessThan(5_000);
        expect(r!.completedAt).toBeGreaterThanOrEqual(r!.createdAt);
      }
      expect(await inspect.get('show-none')).toBeUndefined();
      // list: these 12 (and the spread-* records when the test above ran), on 3 masters, each once
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await inspect.list({ limit: 5, ...(cursor ? { cursor } : {}) });
        seen.push(...page.records.map((r) => r.id));
        expect(page.records.every((r) => r.state === 'completed')).toBe(true);
        cursor = page.cursor;
        pages++;
      } while (cursor && pages < 100);
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen).toEqual(expect.arrayContaining(ids));
      expect(seen.filter((id) => !id.startsWith('spread-')).sort()).toEqual([...ids].sort());
      expect(pages).toBeGreaterThan(2);
      expect((await store.inspect!.list({ limit: 1000 })).records.length).toBeGreaterThan(0);
      await expect(inspect.list({ limit: 5, cursor: '7.0' })).rejects.toThrow(/not a cursor/);
      await expect(inspect.list({ limit: 5, cursor: 'abc' })).rejects.toThrow(/not a cursor/);
    });
  });

  describe('redis store on Cluster: a redis+cluster:// URL, from the library and the CLI', () => {
    it('opens a Cluster from the seed nodes, wakes a waiter, lists across masters, and idem keys list / stats read it', async () => {
      const prefix = uniqueName('idem_redis_url');
      const spec = `redis+cluster://${nodes.map((n) => `${n.host}:${n.port}`).join(',')}?prefix=${prefix}`;
      const store = await storeFromSpec(spec);
      const admin = connect();
      try {
        for (let i = 0; i < 9; i++) {
          const token = randomUUID();
          expect(
            await store.claim({ id: `url-${i}`, fingerprint: '', leaseMs: 5_000, ttlMs: 60_000, token }),
          ).toMatchObject({
            status: 'acquired',
          });
          expect(await store.complete(`url-${i}`, token, `v${i}`, 60_000)).toBe(true);
        }
        // a waiter is woken by the holder's complete (sharded pub/sub, the default on a Cluster)
        const idem = createIdem({ store, onInProgress: 'wait', waitTimeout: 5_000 });
        let runs = 0;
        const action = async () => {
          runs++;
          await new Promise((r) => setTimeout(r, 300));
          return 'paid';
        };
        const [a, b] = await Promise.all([idem.run('url-wait', action), idem.run('url-wait', action)]);
        expect([a, b, runs]).toEqual(['paid', 'paid', 1]);
        await store.inspect!.delete(idem.ids('url-wait').recordId);
        // spread over the masters, as with a Cluster client the app made
        const perNode = await Promise.all(
          admin.nodes('master').map(async (n) => (await n.keys(`${prefix}:*`)).length),
        );
        expect(perNode.filter((n) => n > 0).length).toBeGreaterThan(1);
        const listed: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.inspect!.list({ limit: 2, ...(cursor ? { cursor } : {}) });
          listed.push(...page.records.map((r) => r.id));
          cursor = page.cursor;
        } while (cursor);
        expect(listed.sort()).toEqual(Array.from({ length: 9 }, (_, i) => `url-${i}`).sort());
        const out = await run(process.execPath, [
          BIN,
          'keys',
          'list',
          '--store',
          spec,
          '--json',
          '--limit',
          '1000',
        ]);
        expect(
          (JSON.parse(out.stdout) as { records: { id: string }[] }).records.map((r) => r.id).sort(),
        ).toEqual(listed);
        const stats = await run(process.execPath, [BIN, 'stats', '--store', spec, '--json']);
        expect(JSON.parse(stats.stdout)).toMatchObject({ records: 9, byState: { completed: 9 } });
        expect(storeAddress(spec)).toBe(`redis cluster ${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`);
      } finally {
        await store.close?.();
        await deletePrefix(admin, prefix);
        await admin.quit();
      }
    });

    it('idem serve --store redis+cluster://…: 12 concurrent duplicates through 2 workers reach the upstream once', {
      timeout: 60_000,
    }, async () => {
      const prefix = uniqueName('idem_redis_gw');
      const spec = `redis+cluster://${nodes.map((n) => `${n.host}:${n.port}`).join(',')}?prefix=${prefix}`;
      let calls = 0;
      const upstream = createServer((req, res) => {
        calls++;
        req.resume();
        setTimeout(
          () => res.writeHead(201, { 'content-type': 'application/json' }).end('{"paid":true}'),
          200,
        );
      });
      await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
      const up = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
      const args = ['serve', '--upstream', up, '--store', spec, '--port', '0', '--workers', '2'];
      const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      const admin = connect();
      try {
        let stdout = '';
        let stderr = '';
        child.stderr!.on('data', (d) => (stderr += d));
        const url = await new Promise<string>((resolve, reject) => {
          child.stdout!.on('data', (d) => {
            stdout += d;
            const m = /idem gateway (http:\/\/\S+)/.exec(stdout);
            if (m) resolve(m[1]!);
          });
          child.once('exit', () => reject(new Error(`idem serve ended: ${stderr}`)));
        });
        expect(stdout).toContain(`store redis+cluster://`);
        const send = () =>
          fetch(`${url}/payments`, {
            method: 'POST',
            headers: {
              'idempotency-key': 'pay-1',
              authorization: 'Bearer t',
              'content-type': 'application/json',
            },
            body: '{"amount":12}',
          }).then(async (r) => [r.status, await r.text()]);
        const answers = await Promise.all(Array.from({ length: 12 }, send));
        expect(answers).toEqual(Array.from({ length: 12 }, () => [201, '{"paid":true}']));
        expect(calls).toBe(1);
        expect(await send()).toEqual([201, '{"paid":true}']);
        expect(calls).toBe(1);
      } finally {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
        upstream.close();
        await deletePrefix(admin, prefix);
        await admin.quit();
      }
    });

    it('a malformed seed list or an unknown parameter is an InvalidOptionError at once', async () => {
      await expect(storeFromSpec('redis+cluster://a:1,b:notaport')).rejects.toThrow(InvalidOptionError);
      await expect(storeFromSpec('redis+cluster://a:1,b:2?prefx=x')).rejects.toThrow(
        /unknown parameter prefx/,
      );
      await expect(storeFromSpec('redis+cluster://a:1,b:2/3')).rejects.toThrow(/only database 0/);
      await expect(storeFromSpec('redis+cluster://')).rejects.toThrow(InvalidOptionError);
      await expect(storeFromSpec('redis+cluster://u:%E0%A4%A@a:1')).rejects.toThrow(/percent-encoding/);
      expect(redact('redis+cluster://u:secret@a:1,b:2')).toBe('redis+cluster://u:***@a:1,b:2');
    });
  });

  const prefix = uniqueName('idem_redis');
  testStore({
    name: 'redis cluster',
    selfExpiring: true,
    create: () => {
      const client = connect();
      const store = redisStore({ client, prefix });
      let closed = false;
      return {
        ...store,
        async close() {
          if (closed) return; // close() twice is part of the contract
          closed = true;
          await store.close?.();
          await deletePrefix(client, prefix);
          await client.quit();
        },
      };
    },
    processStore: {
      module: new URL('./fixtures/redis-factory.ts', import.meta.url).pathname,
      arg: { cluster: nodes, prefix }, // serialized when the workers start, after beforeAll
    },
  });
} else {
  const reason = 'redis-server / redis-cli are not installed, so no local Cluster can be started';
  if (REQUIRE_SERVICES) throw new Error(`${reason}, and IDEM_REQUIRE_SERVICES=1 requires it`);
  console.warn(`[idem tests] skipping the Redis Cluster suite: ${reason}`);
  describe.skip('redis store on Cluster', () => {
    it('needs redis-server and redis-cli', () => {});
  });
}

// Runs last: it crashes a master and brings it back.
if (binaries) {
  describe('redis store on Cluster: a master crashes and comes back', () => {
    const prefix = uniqueName('idem_redis');
    let client: Cluster;
    let store: ReturnType<typeof redisStore>;
    beforeAll(() => {
      client = connect();
      store = redisStore({ client, prefix, commandTimeout: 500 });
    });
    afterAll(async () => {
      await store.close?.();
      await deletePrefix(client, prefix).catch(() => {});
      await client.quit();
    });

    it('rejects with StoreUnavailableError within commandTimeout, then recovers', async () => {
      const victim = cluster.servers[0]!;
      // an id whose slot lives on the victim
      const slots = (await client.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
      const [from, to] = slots.find(([, , [, port]]) => port === victim.port)!;
      let id = '';
      for (let i = 0; !id; i++) {
        const slot = Number(await client.cluster('KEYSLOT', `n${i}`));
        if (slot >= from && slot <= to) id = `n${i}`;
      }
      const claim = () =>
        store.claim({ id, fingerprint: '', leaseMs: 5_000, ttlMs: 60_000, token: randomUUID() });
      expect(await claim()).toMatchObject({ status: 'acquired' });
      victim.signal('SIGKILL');
      const start = performance.now();
      await expect(store.get(id)).rejects.toMatchObject({ code: 'store_unavailable' });
      expect(performance.now() - start).toBeLessThan(750);
      await victim.start();
      let back = false;
      for (let i = 0; i < 100 && !back; i++) {
        back = await store.get(id).then(
          () => true,
          () => false,
        );
        if (!back) await new Promise((r) => setTimeout(r, 100));
      }
      expect(back).toBe(true);
      expect(await claim()).toMatchObject({ status: 'acquired', attempt: 1 }); // no persistence
    });
  });
}

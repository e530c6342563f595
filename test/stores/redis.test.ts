import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidOptionError, StoreUnavailableError } from '../../src/core/errors.ts';
import { redisStore } from '../../src/stores/redis/index.ts';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix, redisStoreSuite, until } from './fixtures/redis-suite.ts';

const up = await serviceAvailable('redis');
const url = SERVICES.redis;

describe.skipIf(!up)('redis store (standalone)', () => {
  redisStoreSuite('standalone', () => new Redis(url));

  const prefix = uniqueName('idem_redis');
  const admin = up ? new Redis(url) : undefined;
  afterAll(async () => {
    await deletePrefix(admin!, prefix);
    await deletePrefix(admin!, `kp:${prefix}`);
    admin?.disconnect();
  });

  it('claims in one round trip: one EVAL/EVALSHA per claim, Redis TIME inside', async () => {
    const store = redisStore({ url, prefix });
    const monitor = await startMonitor(url);
    const { seen } = monitor;
    const ids = Array.from({ length: 10 }, (_, i) => `rt${i}`);
    for (const id of [...ids, ...ids]) {
      await store.claim({ id, fingerprint: '', leaseMs: 5_000, ttlMs: 60_000, token: randomUUID() });
    }
    const clientCalls = (id: string) =>
      seen.filter((c) => c.source !== 'lua' && c.args.includes(`${prefix}:{${id}}`)).map((c) => c.args[0]!);
    // inside each script: TIME, then the read of the record (scripts run atomically, so adjacent)
    const timeBeforeRead = () =>
      seen.flatMap((c, i) =>
        c.source === 'lua' && c.args[0]!.toLowerCase() === 'hmget' && c.args[1]!.startsWith(`${prefix}:{rt`)
          ? [`${seen[i - 1]!.source} ${seen[i - 1]!.args[0]!.toLowerCase()}`]
          : [],
      );
    // MONITOR output trails the replies: wait until every line is in
    await until(() => ids.every((id) => clientCalls(id).length >= 2) && timeBeforeRead().length >= 20, 5_000);
    monitor.stop();
    await store.close?.();
    for (const id of ids) {
      expect(clientCalls(id).map((n) => n.toLowerCase())).toSatisfy(
        (names: string[]) => names.length === 2 && names.every((n) => n === 'evalsha' || n === 'eval'),
      );
    }
    expect(timeBeforeRead()).toEqual(Array(20).fill('lua time'));
  });

  it('the key expires with the record: a guard marker after guard ms, its claim after lease + ttl', async () => {
    const store = redisStore({ url, prefix });
    const key = `${prefix}:{pttl}`;
    const claim = (token: string) =>
      store.claim({ id: 'pttl', fingerprint: 'fp', leaseMs: 5_000, ttlMs: 3_600_000, token });
    await claim('t1');
    expect(await admin!.pttl(key)).toBeGreaterThan(3_600_000);
    expect(await store.release('pttl', 't1', 2_000)).toBe(true);
    const markerTtl = await admin!.pttl(key);
    expect(markerTtl).toBeGreaterThan(1_000);
    expect(markerTtl).toBeLessThanOrEqual(2_000);
    expect(await claim('t2')).toMatchObject({ status: 'acquired', attempt: 1, takeover: false });
    expect(await admin!.pttl(key)).toBeGreaterThan(3_600_000);
    await store.close?.();
  });

  it('honours a client keyPrefix for keys and wake-up channels', async () => {
    const client = new Redis(url, { keyPrefix: 'kp:' });
    const store = redisStore({ client, prefix });
    const token = randomUUID();
    await store.claim({ id: 'k', fingerprint: '', leaseMs: 5_000, ttlMs: 60_000, token });
    expect(await admin!.exists(`kp:${prefix}:{k}`)).toBe(1);
    await store.claim({ id: 'k', fingerprint: '', leaseMs: 5_000, ttlMs: 60_000, token: 'waiter' });
    let woke = 0;
    store.subscribe!('k', () => woke++);
    await until(
      async () => Number(((await admin!.pubsub('NUMSUB', `kp:${prefix}:{k}`)) as unknown[])[1]) > 0,
    );
    await store.complete('k', token, 'v', 60_000);
    expect(await until(() => woke === 1)).toBe(true);
    await store.close?.();
    client.disconnect();
  });

  it('inspect pages through a prefix that is a small part of a shared Redis in few round trips', async () => {
    const client = new Redis(url);
    const own = uniqueName('idem_sparse');
    const foreign = uniqueName('other_app');
    const store = redisStore({ client, prefix: own });
    try {
      for (let i = 0; i < 5; i++) {
        await store.claim({ id: `s${i}`, fingerprint: '', leaseMs: 5_000, ttlMs: 60_000, token: 't' });
      }
      // 100,000 keys of another application around them (they expire on their own too)
      for (let b = 0; b < 100; b++) {
        const p = admin!.pipeline();
        for (let i = 0; i < 1000; i++) p.set(`${foreign}:${b}:${i}`, 'x', 'PX', 120_000);
        await p.exec();
      }
      const scan = client.scan.bind(client);
      let scans = 0;
      client.scan = ((...args: Parameters<typeof scan>) => {
        scans++;
        return scan(...args);
      }) as typeof client.scan;
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.inspect!.list({ limit: 4, cursor });
        seen.push(...page.records.map((r) => r.id));
        cursor = page.cursor;
        pages++;
      } while (cursor);
      expect(seen.sort()).toEqual(['s0', 's1', 's2', 's3', 's4']);
      // one SCAN of COUNT 4 at a time took 22,811 round trips for this
      expect(scans).toBeLessThan(1_000);
      expect(pages).toBeLessThan(100);
    } finally {
      await deletePrefix(admin!, own);
      await deletePrefix(admin!, foreign);
      client.disconnect();
    }
  }, 60_000);

  it('inspect lists and deletes under a client keyPrefix, and is offered on a Cluster client too', async () => {
    const client = new Redis(url, { keyPrefix: 'kp2:' });
    const store = redisStore({ client, prefix });
    await store.claim({ id: 'ia', fingerprint: 'f', leaseMs: 5_000, ttlMs: 60_000, token: 'ta' });
    await store.complete('ia', 'ta', 'done', 60_000);
    await store.claim({ id: 'ib', fingerprint: 'f', leaseMs: 5_000, ttlMs: 60_000, token: 'tb' });
    const seen = [];
    let cursor: string | undefined;
    do {
      const page = await store.inspect!.list({ limit: 100, cursor });
      seen.push(...page.records);
      cursor = page.cursor;
    } while (cursor);
    expect(seen.map((r) => [r.id, r.state, r.outcomeBytes]).sort()).toEqual([
      ['ia', 'completed', 4],
      ['ib', 'in_progress', 0],
    ]);
    expect(await store.inspect!.delete('ia')).toBe(true);
    expect(await admin!.exists(`kp2:${prefix}:{ia}`)).toBe(0);
    expect(await admin!.exists(`kp2:${prefix}:{ib}`)).toBe(1);
    await store.inspect!.delete('ib');
    client.disconnect();

    const noop = () => {};
    const cluster = {
      status: 'ready',
      isCluster: true,
      options: {},
      defineCommand: noop,
      duplicate: noop,
      once: noop,
      quit: async () => {},
      disconnect: noop,
      nodes: () => [],
    };
    const clustered = redisStore({ client: cluster as never, prefix, pubsub: 'off' });
    // a Cluster client lists each master in turn (test/stores/redis.cluster.test.ts, on a real one);
    // one that knows no master yet says so instead of answering an empty listing
    await expect(clustered.inspect!.list({ limit: 5 })).rejects.toThrow(StoreUnavailableError);
  });

  it('a claim writes b (created at) and h (scope hash, only when scoped) on create, a takeover keeps them, complete adds d', async () => {
    const store = redisStore({ url, prefix });
    const fields = async (id: string) => Object.keys(await admin!.hgetall(`${prefix}:{${id}}`)).sort();
    const plain = { id: 'fields-plain', fingerprint: 'f', leaseMs: 100, ttlMs: 60_000, token: 't1' };
    await store.claim(plain);
    expect(await fields(plain.id)).toEqual(['a', 'b', 'e', 'f', 'l', 's', 't']);
    const scoped = { ...plain, id: 'fields-scoped', scopeHash: 'c2NvcGU' };
    await store.claim(scoped);
    expect(await fields(scoped.id)).toEqual(['a', 'b', 'e', 'f', 'h', 'l', 's', 't']);
    const created = await admin!.hget(`${prefix}:{${scoped.id}}`, 'b');
    await new Promise((r) => setTimeout(r, 150));
    // a takeover writes t, a, l and e only: b and h stay as the first claim wrote them
    const taken = { ...scoped, token: 't2', scopeHash: 'b3RoZXI' };
    expect(await store.claim(taken)).toMatchObject({ status: 'acquired', attempt: 2, takeover: true });
    expect(await admin!.hmget(`${prefix}:{${scoped.id}}`, 'b', 'h', 'd')).toEqual([created, 'c2NvcGU', null]);
    expect(await store.complete(scoped.id, 't2', 'out', 60_000)).toBe(true);
    const [b, d] = (await admin!.hmget(`${prefix}:{${scoped.id}}`, 'b', 'd')).map(Number);
    expect(b).toBe(Number(created));
    expect(d).toBeGreaterThanOrEqual(b!);
    expect(await store.inspect!.get(scoped.id)).toMatchObject({
      state: 'completed',
      createdAt: b,
      completedAt: d,
      scopeHash: 'c2NvcGU',
      outcomeBytes: 3,
    });
    await store.close?.();
  });

  it('a record written before b, d and h existed lists and gets as 0 / 0 / "", replays, and can still be taken over and completed', async () => {
    const store = redisStore({ url, prefix });
    const now = Date.now();
    const old = (id: string) => `${prefix}:{${id}}`;
    // the old layout, written by hand: a completed record and one whose holder died
    await admin!.hset(old('old-done'), {
      s: 'c',
      f: 'fp',
      t: 'told',
      a: '1',
      l: '0',
      e: String(now + 60_000),
      o: 'old outcome',
      x: '',
    });
    await admin!.pexpireat(old('old-done'), now + 60_000);
    await admin!.hset(old('old-held'), {
      s: 'p',
      f: 'fp',
      t: 'dead',
      a: '1',
      l: String(now - 1),
      e: String(now + 60_000),
    });
    await admin!.pexpireat(old('old-held'), now + 60_000);

    const unknown = { createdAt: 0, completedAt: 0, scopeHash: '' };
    const done = await store.inspect!.get('old-done');
    expect(done).toEqual({
      id: 'old-done',
      state: 'completed',
      attempt: 1,
      leaseUntil: 0,
      expiresAt: now + 60_000,
      fingerprint: 'fp',
      outcomeBytes: 11,
      ...unknown,
    });
    expect(await store.inspect!.get('old-held')).toMatchObject({
      state: 'in_progress',
      attempt: 1,
      ...unknown,
    });
    const listed = [];
    let cursor: string | undefined;
    do {
      const page = await store.inspect!.list({ limit: 100, cursor });
      listed.push(...page.records.filter((r) => r.id.startsWith('old-')));
      cursor = page.cursor;
    } while (cursor);
    expect(listed.find((r) => r.id === 'old-done')).toEqual(done);
    expect(listed.find((r) => r.id === 'old-held')).toMatchObject(unknown);

    // still a replay: the claim answers the stored outcome
    const replay = await store.claim({
      id: 'old-done',
      fingerprint: 'fp',
      leaseMs: 5_000,
      ttlMs: 60_000,
      token: 'new',
    });
    expect(replay).toMatchObject({
      status: 'existing',
      record: { state: 'completed', outcome: 'old outcome' },
    });
    expect(await store.get('old-done')).toMatchObject({ outcome: 'old outcome' });
    // a takeover of the old record keeps it the same record: creation time unknown, then completed
    const takeover = {
      id: 'old-held',
      fingerprint: 'fp',
      leaseMs: 5_000,
      ttlMs: 60_000,
      token: 'heir',
      scopeHash: 'c2M',
    };
    expect(await store.claim(takeover)).toMatchObject({ status: 'acquired', attempt: 2, takeover: true });
    expect(await store.complete('old-held', 'heir', 'v', 60_000)).toBe(true);
    const heir = await store.inspect!.get('old-held');
    expect(heir).toMatchObject({ state: 'completed', createdAt: 0, scopeHash: '' });
    expect(heir!.completedAt).toBeGreaterThan(0);
    await store.close?.();
  });

  it('works with a client that answers integers as strings (stringNumbers)', async () => {
    const client = new Redis(url, { stringNumbers: true });
    const store = redisStore({ client, prefix });
    const token = randomUUID();
    const claim = { id: 'sn', fingerprint: '', leaseMs: 5_000, ttlMs: 60_000, token };
    expect(await store.claim(claim)).toMatchObject({ status: 'acquired', attempt: 1, takeover: false });
    expect(await store.claim({ ...claim, token: 'other' })).toMatchObject({ status: 'existing' });
    expect(typeof (await store.renew('sn', token, 5_000))).toBe('number');
    expect(await store.complete('sn', token, 'v', 60_000)).toBe(true);
    expect(await store.get('sn')).toMatchObject({ attempt: 1, outcome: 'v' });
    expect(await store.release('sn', token)).toBe(false);
    client.disconnect();
  });

  it('sends the commands of calls made in the same tick in one socket write', async () => {
    const client = new Redis(url);
    const store = redisStore({ client, prefix });
    await store.get('warm'); // connected, scripts loaded: every later call is one EVALSHA
    type WriteFn = (...args: unknown[]) => unknown;
    const socket = (client as unknown as { stream: Record<'_write' | '_writev', WriteFn> }).stream;
    let writes = 0;
    for (const m of ['_write', '_writev'] as const) {
      const original = socket[m];
      socket[m] = function (this: unknown, ...args: unknown[]) {
        writes++;
        return original.apply(this, args);
      };
    }
    const claims = Array.from({ length: 16 }, (_, i) =>
      store.claim({ id: `tick${i}`, fingerprint: '', leaseMs: 5_000, ttlMs: 60_000, token: randomUUID() }),
    );
    const results = await Promise.all(claims);
    expect(results.map((r) => r.status)).toEqual(Array(16).fill('acquired'));
    expect(writes).toBe(1);
    // a lone call goes out at the end of its tick, on its own
    writes = 0;
    expect(await store.get('tick0')).toMatchObject({ state: 'in_progress' });
    expect(writes).toBe(1);
    client.disconnect();
  });

  it('connects from a URL and closes only what it created', async () => {
    const store = redisStore({ url, prefix, commandTimeout: 1_000 });
    expect(await store.get('nothing')).toBeUndefined();
    const before = ((await admin!.client('LIST')) as string).split('\n').length;
    await store.close?.();
    await until(async () => ((await admin!.client('LIST')) as string).split('\n').length < before);
    expect(((await admin!.client('LIST')) as string).split('\n').length).toBeLessThan(before);
    await expect(store.get('nothing')).rejects.toMatchObject({ code: 'store_unavailable' });
  });

  it('rejects bad options with InvalidOptionError', () => {
    expect(() => redisStore({})).toThrow(InvalidOptionError);
    expect(() => redisStore({ url, client: admin! })).toThrow(InvalidOptionError);
    expect(() => redisStore({ url, prefix: 'a{b}' })).toThrow(InvalidOptionError);
    expect(() => redisStore({ url, commandTimeout: 0 })).toThrow(InvalidOptionError);
  });
});

/**
 * MONITOR on a raw socket (ioredis' monitor() can trip over lines that arrive while it
 * disconnects): every command Redis runs, with `source` 'lua' for those run by scripts.
 */
async function startMonitor(redisUrl: string) {
  const u = new URL(redisUrl);
  const socket = net.connect({ host: u.hostname, port: Number(u.port) });
  const seen: { args: string[]; source: string }[] = [];
  let buffer = '';
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      let nl = buffer.indexOf('\r\n');
      while (nl >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        if (line === '+OK') resolve();
        const m = /^\+[\d.]+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
        if (m) {
          const args = [...m[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((a) => a[1]!);
          seen.push({ source: m[1] === 'lua' ? 'lua' : m[1]!, args });
        }
        nl = buffer.indexOf('\r\n');
      }
    });
    socket.write('MONITOR\r\n');
  });
  return { seen, stop: () => socket.destroy() };
}

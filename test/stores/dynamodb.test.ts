/**
 * The DynamoDB store's own behaviour on dynalite: the item layout and TTL attribute, requests
 * per transition, the consistent-read fallback where the server sends no ALL_OLD item,
 * outcome size limits, option checks, purge, createTable, and an unreachable or silent server.
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, describe, expect, it } from 'vitest';
import { createIdem } from '../../src/core/engine.ts';
import { InvalidOptionError, OutcomeTooLargeError, StoreUnavailableError } from '../../src/core/errors.ts';
import type { ClaimRequest } from '../../src/core/store.ts';
import { createTable, type DynamoDBClientLike, dynamodbStore } from '../../src/stores/dynamodb/index.ts';
import { storeAddress, storeFromSpec } from '../../src/stores/spec.ts';
import { createTestTable, dynamoClient, startDynalite } from '../helpers/dynalite.ts';
import { uniqueName } from '../helpers/services.ts';

const dynalite = await startDynalite();
const table = uniqueName('idem_ddb');
await createTestTable(dynalite.endpoint, table);
const client = dynamoClient(dynalite.endpoint);
afterAll(async () => {
  client.destroy();
  await dynalite.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const req = (over: Partial<ClaimRequest> = {}): ClaimRequest => ({
  id: randomUUID(),
  fingerprint: 'fp',
  leaseMs: 30_000,
  ttlMs: 60_000,
  token: randomUUID(),
  ...over,
});

/** The client, counting the requests the store sends by command name. */
function counting(emulateAllOld = false) {
  const sent: string[] = [];
  const wrapped: DynamoDBClientLike = {
    async send(command, options) {
      const c = command as { constructor: { name: string }; input: Record<string, unknown> };
      sent.push(c.constructor.name.replace(/Command$/, ''));
      try {
        return await client.send(command as never, options);
      } catch (e) {
        // DynamoDB answers the item with a failed condition when asked (ALL_OLD); dynalite does
        // not, so this emulation fetches it outside the count, to check the store's own path.
        const key = c.input.Key ?? { id: (c.input.Item as Record<string, unknown>)?.id };
        if (emulateAllOld && (e as Error).name === 'ConditionalCheckFailedException') {
          const got = await client.send(
            new GetItemCommand({ TableName: table, Key: key as never, ConsistentRead: true }),
          );
          Object.assign(e as object, { Item: got.Item });
        }
        throw e;
      }
    },
  };
  return { client: wrapped, sent };
}
const raw = async (id: string) =>
  (await client.send(new GetItemCommand({ TableName: table, Key: { id: { S: id } }, ConsistentRead: true })))
    .Item;

describe('dynamodb store (dynalite)', () => {
  const store = dynamodbStore({ client, table, clockSkewMs: 0 });

  it('keeps one item per record, with the TTL attribute in epoch seconds no earlier than expiresAt', async () => {
    const r = req();
    const c = await store.claim(r);
    expect(c).toMatchObject({ status: 'acquired', attempt: 1 });
    const held = await raw(r.id);
    // b: created at; h (scope hash) only when the claim has one
    expect(Object.keys(held!).sort()).toEqual([
      'a',
      'b',
      'e',
      'expiration',
      'f',
      'id',
      'l',
      'm',
      'n',
      's',
      't',
    ]);
    const e = Number(held!.e!.N);
    expect(Number(held!.expiration!.N)).toBe(Math.ceil(e / 1000));
    expect(e - Number(held!.l!.N)).toBe(60_000);
    const until = await store.renew(r.id, r.token, 120_000);
    const renewed = await raw(r.id);
    expect(Number(renewed!.e!.N)).toBe(until! + 60_000);
    expect(Number(renewed!.expiration!.N) * 1000).toBeGreaterThanOrEqual(until! + 60_000);
    expect(await store.complete(r.id, r.token, 'done', 5_000)).toBe(true);
    const done = await raw(r.id);
    expect(Object.keys(done!).sort()).toEqual([
      'a',
      'b',
      'd',
      'e',
      'expiration',
      'f',
      'id',
      'l',
      'o',
      's',
      't',
    ]);
    expect(Number(done!.d!.N)).toBeGreaterThanOrEqual(Number(done!.b!.N));
    expect(Number(done!.expiration!.N)).toBe(Math.ceil(Number(done!.e!.N) / 1000));
    expect(Number(done!.e!.N) - Date.now()).toBeLessThanOrEqual(5_000);
  });

  it('one request per transition; a failed claim answers the record in the same request where the server sends ALL_OLD', async () => {
    const { client: c, sent } = counting(true);
    const s = dynamodbStore({ client: c, table, clockSkewMs: 0 });
    const r = req();
    await s.claim(r);
    expect(sent).toEqual(['PutItem']);
    await s.renew(r.id, r.token, 30_000);
    await s.complete(r.id, r.token, 'v', 60_000);
    expect(sent).toEqual(['PutItem', 'UpdateItem', 'UpdateItem']);
    sent.length = 0;
    expect(await s.claim(req({ id: r.id }))).toMatchObject({ status: 'existing', record: { outcome: 'v' } });
    expect(sent).toEqual(['PutItem']); // the replay: one request
    sent.length = 0;
    const g = req();
    await s.claim(g);
    await s.release(g.id, g.token);
    expect(sent).toEqual(['PutItem', 'DeleteItem']);
  });

  it('on dynalite (no ALL_OLD item) a failed claim costs one consistent read more, and only then', async () => {
    const { client: c, sent } = counting(false);
    const s = dynamodbStore({ client: c, table, clockSkewMs: 0 });
    const r = req();
    await s.claim(r);
    await s.complete(r.id, r.token, 'v', 60_000);
    sent.length = 0;
    expect(await s.claim(req({ id: r.id }))).toMatchObject({ status: 'existing', record: { outcome: 'v' } });
    expect(sent).toEqual(['PutItem', 'GetItem']);
  });

  it('a takeover is a failed put that returns the record, then one update fenced on it', async () => {
    const { client: c, sent } = counting(true);
    const s = dynamodbStore({ client: c, table, clockSkewMs: 0 });
    const r = req({ leaseMs: 100 });
    await s.claim(r);
    await sleep(150);
    sent.length = 0;
    const t2 = randomUUID();
    expect(await s.claim({ ...r, token: t2 })).toMatchObject({
      status: 'acquired',
      attempt: 2,
      takeover: true,
    });
    expect(sent).toEqual(['PutItem', 'UpdateItem']);
    // a store that did not claim the token guesses attempt 1 for release, then learns it was 2
    const other = dynamodbStore({ client, table, clockSkewMs: 0 });
    expect(await other.release(r.id, t2)).toBe(true);
    expect(await s.get(r.id)).toMatchObject({ state: 'in_progress', token: '', attempt: 2 });
  });

  it('a claim that found the key held takes it over in one request once the lease has run out (a waiter, a rescuer)', async () => {
    const { client: c, sent } = counting(true);
    const s = dynamodbStore({ client: c, table, clockSkewMs: 0 });
    const r = req({ leaseMs: 150 });
    await s.claim(r);
    expect(await s.claim({ ...r, token: randomUUID() })).toMatchObject({ status: 'existing' }); // held
    await sleep(200);
    sent.length = 0;
    const t3 = randomUUID();
    expect(await s.claim({ ...r, token: t3 })).toMatchObject({
      status: 'acquired',
      attempt: 2,
      takeover: true,
    });
    expect(sent).toEqual(['UpdateItem']);
    // what was seen may be stale: completed meanwhile, the fenced update answers the record as it is
    const q = req({ leaseMs: 150 });
    await s.claim(q);
    await s.claim({ ...q, token: randomUUID() });
    await sleep(200);
    expect(await s.complete(q.id, q.token, 'late but first', 60_000)).toBe(true);
    sent.length = 0;
    expect(await s.claim({ ...q, token: randomUUID() })).toMatchObject({
      status: 'existing',
      record: { state: 'completed', outcome: 'late but first' },
    });
    expect(sent).toEqual(['UpdateItem']);
  });

  it("a claim whose write landed but whose answer was lost (the SDK's retry fails its condition) is still acquired", async () => {
    let replayed = false;
    const retrying: DynamoDBClientLike = {
      async send(command, options) {
        const first = await client.send(command as never, options);
        const name = (command as { constructor: { name: string } }).constructor.name;
        if (replayed || name !== 'PutItemCommand') return first;
        replayed = true; // the answer is lost on the way back; the SDK sends the request again
        return client.send(command as never, options);
      },
    };
    const s = dynamodbStore({ client: retrying, table, clockSkewMs: 0 });
    const r = req();
    expect(await s.claim(r)).toMatchObject({ status: 'acquired', attempt: 1, takeover: false });
    expect(replayed).toBe(true);
    expect(await s.complete(r.id, r.token, 'once', 60_000)).toBe(true);
    expect(await s.get(r.id)).toMatchObject({ state: 'completed', outcome: 'once', token: r.token });
  });

  it('stores a lone surrogate exactly (JSON-escaped, marked j)', async () => {
    const r = req();
    await store.claim(r);
    await store.complete(r.id, r.token, 'a\uD800b', 60_000);
    expect((await raw(r.id))!.j).toEqual({ N: '1' });
    expect((await store.get(r.id))?.outcome).toBe('a\uD800b');
  });

  it('refuses an outcome over 400 KB as OutcomeTooLargeError, before sending, or when DynamoDB refuses the item', async () => {
    const { client: c, sent } = counting();
    const s = dynamodbStore({ client: c, table, clockSkewMs: 0 });
    const r = req();
    await s.claim(r);
    sent.length = 0;
    const err = await s.complete(r.id, r.token, 'x'.repeat(410_000), 60_000).catch((e) => e);
    expect(err).toBeInstanceOf(OutcomeTooLargeError);
    expect(err.bytes).toBe(410_000);
    expect(err.limit).toBeLessThan(400 * 1024);
    expect(sent).toEqual([]);
    // a big fingerprint this store did not see: the server refuses the item, same error
    const big = req({ fingerprint: 'f'.repeat(300_000) });
    await s.claim(big);
    const fresh = dynamodbStore({ client, table, clockSkewMs: 0 });
    await expect(fresh.complete(big.id, big.token, 'y'.repeat(150_000), 60_000)).rejects.toBeInstanceOf(
      OutcomeTooLargeError,
    );
    expect(await fresh.get(big.id)).toMatchObject({ state: 'in_progress', token: big.token });
  });

  it('through the engine: a 500 KB result is OutcomeTooLargeError for the caller and every retry, never re-run', async () => {
    const idem = createIdem({ store });
    let runs = 0;
    const action = () => {
      runs++;
      return 'z'.repeat(500_000);
    };
    const key = randomUUID();
    const first = await idem.run(key, action).catch((e) => e);
    expect(first).toBeInstanceOf(OutcomeTooLargeError);
    expect(first.value).toHaveLength(500_000); // the first caller still gets what was produced
    await expect(idem.run(key, action)).rejects.toBeInstanceOf(OutcomeTooLargeError);
    expect(runs).toBe(1);
  });

  it('purgeExpired deletes only expired items, in bounded batches that go on where the last stopped', async () => {
    const own = uniqueName('idem_ddb_purge');
    await createTestTable(dynalite.endpoint, own);
    const s = dynamodbStore({ client, table: own, clockSkewMs: 0 });
    const expired = Array.from({ length: 7 }, () => req());
    for (const r of expired) {
      await s.claim(r);
      await s.complete(r.id, r.token, 'old', 10);
    }
    const live = req();
    await s.claim(live);
    await sleep(50);
    // an expired item claimed again meanwhile is live: never deleted
    const reclaimed = req({ id: expired[0]!.id });
    await s.claim(reclaimed);
    expect(await s.purgeExpired(4)).toBe(4);
    expect(await s.purgeExpired(4)).toBe(2);
    expect(await s.purgeExpired(4)).toBe(0);
    expect(await s.get(live.id)).toMatchObject({ state: 'in_progress' });
    expect(await s.get(reclaimed.id)).toMatchObject({ token: reclaimed.token });
    await expect(s.purgeExpired(-1)).rejects.toBeInstanceOf(InvalidOptionError);
  });

  it('createTable answers false for a table that exists, and a store on other attribute names works', async () => {
    const own = uniqueName('idem_ddb_attr');
    expect(await createTable({ client, table: own, keyAttribute: 'pk', timeToLive: false })).toBe(true);
    expect(await createTable({ client, table: own, keyAttribute: 'pk', timeToLive: false })).toBe(false);
    const s = dynamodbStore({ client, table: own, keyAttribute: 'pk', ttlAttribute: 'ttl', clockSkewMs: 0 });
    const r = req();
    await s.claim(r);
    await s.complete(r.id, r.token, 'v', 60_000);
    const item = (await client.send(new GetItemCommand({ TableName: own, Key: { pk: { S: r.id } } }))).Item;
    expect(Object.keys(item!)).toContain('ttl');
    expect(await s.get(r.id)).toMatchObject({ outcome: 'v' });
    // the store on the default key name cannot write this table: a clear StoreUnavailableError
    const wrong = dynamodbStore({ client, table: own });
    await expect(wrong.claim(req())).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('a dynamodb:// spec (idem serve, idem purge) builds a store that owns its client and destroys it on close', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'spec', AWS_SECRET_ACCESS_KEY: 'spec' });
    try {
      const spec = `dynamodb://${table}?region=us-east-1&endpoint=${encodeURIComponent(dynalite.endpoint)}`;
      expect(storeAddress(spec)).toBe(`DynamoDB table ${table}`);
      const s = await storeFromSpec(spec);
      expect(s.name).toBe('dynamodb');
      const r = req();
      await s.claim(r);
      expect(await s.complete(r.id, r.token, 'via spec', 60_000)).toBe(true);
      expect(await store.get(r.id)).toMatchObject({ outcome: 'via spec' });
      await s.close?.();
      await expect(s.get(r.id)).rejects.toBeInstanceOf(StoreUnavailableError);
    } finally {
      process.env = saved;
    }
  });

  it('refuses bad options with InvalidOptionError', () => {
    const bad: unknown[] = [
      undefined,
      { table },
      { client, clientConfig: {}, table },
      { client, table: 'x' },
      { client, table, clockSkewMs: -1 },
      { client, table, requestTimeout: 0 },
      { client, table, keyAttribute: 'e' },
      { client, table, ttlAttribute: 'b' }, // the record's own: created at, completed at, scope hash
      { client, table, keyAttribute: 'd' },
      { client, table, ttlAttribute: 'h' },
      { client, table, keyAttribute: 'k', ttlAttribute: 'k' },
      { client, table, tabel: 'typo' },
    ];
    for (const options of bad) {
      expect(() => dynamodbStore(options as never), JSON.stringify(options && Object.keys(options))).toThrow(
        InvalidOptionError,
      );
    }
    expect(() => dynamodbStore({ client, table, clockSkew: 5 } as never)).toThrow(
      /did you mean clockSkewMs\?/,
    );
    expect(() => dynamodbStore({ client, tabel: 'x' } as never)).toThrow(/did you mean table\?/);
    expect(() => dynamodbStore({ client, table, region: 'x' } as never)).toThrow(
      /known: client, clientConfig/,
    );
  });

  it('a server that is down or silent rejects with StoreUnavailableError within requestTimeout', async () => {
    const silent = net.createServer(() => {}); // accepts, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as net.AddressInfo).port;
    const hanging = dynamoClient(`http://127.0.0.1:${port}`);
    try {
      const s = dynamodbStore({ client: hanging, table, requestTimeout: 300 });
      const started = Date.now();
      await expect(s.claim(req())).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      hanging.destroy();
      silent.close();
    }
    const down = dynamoClient('http://127.0.0.1:9'); // nothing listens on the discard port
    try {
      await expect(dynamodbStore({ client: down, table }).get('x')).rejects.toBeInstanceOf(
        StoreUnavailableError,
      );
    } finally {
      down.destroy();
    }
  });

  it('the claim that creates a record writes b and h in its own PutItem; a takeover and complete keep them', async () => {
    const { client: c, sent } = counting(true);
    const s = dynamodbStore({ client: c, table, clockSkewMs: 0 });
    const r = req({ leaseMs: 100, scopeHash: 'c2NvcGU' });
    const before = Date.now();
    await s.claim(r);
    expect(sent).toEqual(['PutItem']);
    const created = await raw(r.id);
    expect(created!.h).toEqual({ S: 'c2NvcGU' });
    expect(Number(created!.b!.N)).toBeGreaterThanOrEqual(before);
    await sleep(150);
    sent.length = 0;
    const heir = { ...r, token: randomUUID(), scopeHash: 'b3RoZXI' };
    expect(await s.claim(heir)).toMatchObject({ status: 'acquired', attempt: 2, takeover: true });
    expect(await s.complete(r.id, heir.token, 'v', 60_000)).toBe(true);
    expect(sent).toEqual(['PutItem', 'UpdateItem', 'UpdateItem']); // failed put, fenced takeover, complete
    const done = await raw(r.id);
    expect(done!.b).toEqual(created!.b);
    expect(done!.h).toEqual({ S: 'c2NvcGU' });
    expect(await s.inspect!.get(r.id)).toMatchObject({
      state: 'completed',
      attempt: 2,
      createdAt: Number(created!.b!.N),
      completedAt: Number(done!.d!.N),
      scopeHash: 'c2NvcGU',
      outcomeBytes: 1,
    });
  });

  it('an item written before b, d and h existed lists and gets as 0 / 0 / "", replays, and can be taken over and completed', async () => {
    const own = uniqueName('idem_ddb_old');
    await createTestTable(dynalite.endpoint, own);
    const s = dynamodbStore({ client, table: own, clockSkewMs: 0 });
    const now = Date.now();
    const e = now + 60_000;
    const put = (item: Record<string, unknown>) =>
      client.send(new PutItemCommand({ TableName: own, Item: item as never }));
    // the old layouts, as the store wrote them: a completed item and one whose holder died
    await put({
      id: { S: 'old-done' },
      s: { S: 'c' },
      f: { S: 'fp' },
      t: { S: 'told' },
      a: { N: '1' },
      l: { N: '0' },
      e: { N: String(e) },
      o: { S: 'old outcome' },
      expiration: { N: String(Math.ceil(e / 1000)) },
    });
    await put({
      id: { S: 'old-held' },
      s: { S: 'p' },
      f: { S: 'fp' },
      t: { S: 'dead' },
      a: { N: '1' },
      l: { N: String(now - 1) },
      e: { N: String(e) },
      m: { N: String(e - now + 1) },
      n: { N: String(Math.ceil((e - now + 1) / 1000)) },
      expiration: { N: String(Math.ceil(e / 1000)) },
    });
    const unknown = { createdAt: 0, completedAt: 0, scopeHash: '' };
    const done = await s.inspect!.get('old-done');
    expect(done).toEqual({
      id: 'old-done',
      state: 'completed',
      attempt: 1,
      leaseUntil: 0,
      expiresAt: e,
      fingerprint: 'fp',
      outcomeBytes: 11,
      ...unknown,
    });
    expect(await s.inspect!.get('old-held')).toMatchObject({ state: 'in_progress', ...unknown });
    const page = await s.inspect!.list({ limit: 100 });
    expect(page.cursor).toBeUndefined();
    expect(page.records.find((x) => x.id === 'old-done')).toEqual(done);
    expect(page.records.find((x) => x.id === 'old-held')).toMatchObject(unknown);

    // still a replay
    expect(await s.claim(req({ id: 'old-done' }))).toMatchObject({
      status: 'existing',
      record: { state: 'completed', outcome: 'old outcome' },
    });
    expect(await s.get('old-done')).toMatchObject({ outcome: 'old outcome' });
    // a takeover keeps it the same record: creation time and scope unknown, then completed
    const heir = req({ id: 'old-held', scopeHash: 'c2M' });
    expect(await s.claim(heir)).toMatchObject({ status: 'acquired', attempt: 2, takeover: true });
    expect(await s.complete('old-held', heir.token, 'v', 60_000)).toBe(true);
    const taken = await s.inspect!.get('old-held');
    expect(taken).toMatchObject({ state: 'completed', createdAt: 0, scopeHash: '' });
    expect(taken!.completedAt).toBeGreaterThan(0);
    expect(await s.inspect!.get('absent')).toBeUndefined();
  });

  it('an item written by another tool without the store attributes is answered, never crashes', async () => {
    const id = randomUUID();
    await client.send(new PutItemCommand({ TableName: table, Item: { id: { S: id }, other: { S: 'x' } } }));
    // no e: expiresAt 0, so the store sees it as expired, and a claim overwrites it
    expect(await store.get(id)).toBeUndefined();
    expect(await store.claim(req({ id }))).toMatchObject({ status: 'acquired', attempt: 1 });
  });
});

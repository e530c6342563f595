/**
 * The Postgres outbox with its relay, on a real database: the transaction decides, claims
 * never overlap across relays, ordering per key holds under failures, failures park, LISTEN
 * wakes the relay (and comes back after its connection is killed), retention deletes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRelay, type PostgresOutbox, postgresOutbox } from '../../src/queue/outbox/index.ts';
import { SERVICES, serviceAvailable } from '../helpers/services.ts';
import { addAll, freshSchema, recordingPublisher, until } from './outbox-helpers.ts';

const up = await serviceAvailable('postgres');

describe.skipIf(!up)('postgres outbox', () => {
  let env: Awaited<ReturnType<typeof freshSchema>>;
  let n = 0;
  const fresh = async () => {
    const outbox = postgresOutbox({ pool: env.pool, schema: env.schema, table: `t${n++}` });
    await outbox.migrate();
    return outbox;
  };
  beforeAll(async () => {
    env = await freshSchema();
  });
  afterAll(async () => {
    await env?.drop();
  });

  it('add() writes in the caller transaction: a rollback leaves nothing, a commit is published once', async () => {
    const outbox = await fresh();
    const client = await env.pool.connect();
    await client.query('BEGIN');
    await outbox.add(client, { topic: 'claims', payload: { n: 1 } });
    await client.query('ROLLBACK');
    client.release();
    const [id] = await addAll(env.pool, outbox, [
      { topic: 'claims', payload: { n: 2 }, headers: { a: 'b' } },
    ]);
    const { publisher, seen } = recordingPublisher();
    const relay = createRelay({ outbox, publisher, listen: false });
    expect(await relay.runOnce()).toEqual({ claimed: 1, published: 1, retried: 0, parked: 0 });
    expect(await relay.runOnce()).toMatchObject({ claimed: 0 });
    expect(seen).toEqual([expect.objectContaining({ id, payload: { n: 2 }, ok: true })]);
    expect(await outbox.stats()).toEqual({ pending: 0, published: 1, parked: 0 });
  });

  it('refuses bad events and options with typed errors, before writing', async () => {
    const outbox = await fresh();
    const client = await env.pool.connect();
    try {
      await expect(outbox.add(client, { topic: '', payload: 1 })).rejects.toMatchObject({
        code: 'invalid_input',
      });
      await expect(outbox.add(client, { topic: 't', payload: undefined })).rejects.toThrow(
        /payload is required/,
      );
      await expect(outbox.add(client, { topic: 't', payload: 1n } as never)).rejects.toThrow(/not JSON/);
      await expect(outbox.add(client, { topic: 't', payload: 1, kye: 'x' } as never)).rejects.toThrow(
        /unknown event field kye/,
      );
    } finally {
      client.release();
    }
    const idle = await env.pool.connect();
    await expect(outbox.add(idle, { topic: 't', payload: 1 })).rejects.toThrow(/not inside a transaction/);
    idle.release();
    await expect(outbox.add(env.pool as never, { topic: 't', payload: 1 })).rejects.toThrow(/not the pool/);
    expect(() => postgresOutbox({ pool: env.pool, table: 'x; drop' })).toThrow(/SQL identifier/);
    const { publisher } = recordingPublisher();
    expect(() => createRelay({ outbox, publisher, batchSzie: 3 } as never)).toThrow(/did you mean batchSize/);
    expect(() => createRelay({ outbox, publisher, lease: '1s', publishTimeout: '2s' })).toThrow(
      /shorter than lease/,
    );
    expect((await outbox.stats()).pending).toBe(0);
  });

  it('two relays racing with 20 % publish failures: every event published, per-key order kept, each marked once', async () => {
    const outbox = await fresh();
    const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
    const events = Array.from({ length: 180 }, (_, i) => ({
      topic: 't',
      key: keys[i % keys.length]!,
      payload: { i },
    }));
    // added in several transactions, as producers would
    for (let i = 0; i < events.length; i += 30) await addAll(env.pool, outbox, events.slice(i, i + 30));
    let seed = 7;
    const random = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const { publisher, seen } = recordingPublisher(() => (random() < 0.2 ? 'broker said no' : false));
    const relays = [1, 2].map(() =>
      createRelay({
        outbox,
        publisher,
        batchSize: 4,
        poll: 5,
        backoff: 1,
        maxBackoff: 5,
        maxAttempts: 50,
        listen: false,
      }),
    );
    await Promise.all(relays.map((r) => r.start()));
    await until('all published', async () => (await outbox.stats()).published === events.length, 60_000);
    await Promise.all(relays.map((r) => r.stop()));
    const ok = seen.filter((s) => s.ok);
    expect(ok.length).toBe(events.length); // each event published successfully exactly once
    expect(new Set(ok.map((s) => s.id)).size).toBe(events.length);
    for (const key of keys) {
      const order = ok.filter((s) => s.key === key).map((s) => (s.payload as { i: number }).i);
      expect(order).toEqual([...order].sort((x, y) => x - y));
      // and no later event of the key was even tried before an earlier one succeeded
      const tried = seen.filter((s) => s.key === key).map((s) => (s.payload as { i: number }).i);
      for (let j = 1; j < tried.length; j++) expect(tried[j]!).toBeGreaterThanOrEqual(tried[j - 1]!);
    }
    expect(seen.length).toBeGreaterThan(events.length); // the failures were real and retried
  }, 90_000);

  it('parks an event after maxAttempts with its error, holds later events of its key, and retryParked() puts it back', async () => {
    const outbox = await fresh();
    let broken = true;
    const { publisher, seen } = recordingPublisher((e) =>
      broken && (e.payload as { n: number }).n === 1 ? 'HTTP 503' : false,
    );
    await addAll(env.pool, outbox, [
      { topic: 't', key: 'k', payload: { n: 1 } },
      { topic: 't', key: 'k', payload: { n: 2 } },
      { topic: 't', key: 'other', payload: { n: 3 } },
    ]);
    const relay = createRelay({
      outbox,
      publisher,
      maxAttempts: 3,
      backoff: 1,
      maxBackoff: 1,
      listen: false,
    });
    for (let i = 0; i < 6; i++) {
      await relay.runOnce();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(seen.filter((s) => (s.payload as { n: number }).n === 1)).toHaveLength(3);
    expect(seen.some((s) => (s.payload as { n: number }).n === 2)).toBe(false); // held behind the parked one
    expect(await outbox.stats()).toEqual({ pending: 1, published: 1, parked: 1 });
    const [parked] = await outbox.parked();
    expect(parked).toMatchObject({ key: 'k', attempts: 3, lastError: 'HTTP 503' });
    broken = false;
    expect(await outbox.retryParked([parked!.id])).toBe(1);
    await relay.runOnce();
    await relay.runOnce();
    expect(await outbox.stats()).toEqual({ pending: 0, published: 3, parked: 0 });
  });

  it('a publisher answer that says park parks at once; a publisher that throws or hangs fails the batch for a retry', async () => {
    const outbox = await fresh();
    await addAll(env.pool, outbox, [{ topic: 't', payload: 1 }]);
    const { publisher } = recordingPublisher(() => ({ error: 'HTTP 400', park: true }));
    await createRelay({ outbox, publisher, listen: false }).runOnce();
    expect((await outbox.parked())[0]).toMatchObject({ attempts: 1, lastError: 'HTTP 400' });

    const o2 = await fresh();
    await addAll(env.pool, o2, [{ topic: 't', payload: 1 }]);
    const hang = { name: 'hang', publish: () => new Promise<never>(() => {}) };
    const r = createRelay({
      outbox: o2,
      publisher: hang,
      lease: 400,
      publishTimeout: 100,
      backoff: 1,
      listen: false,
    });
    expect(await r.runOnce()).toMatchObject({ claimed: 1, retried: 1 });
    const thrower = { name: 'throw', publish: async () => Promise.reject(new Error('socket closed')) };
    await new Promise((res) => setTimeout(res, 20));
    const r2 = createRelay({ outbox: o2, publisher: thrower, backoff: 1, maxAttempts: 2, listen: false });
    expect(await r2.runOnce()).toMatchObject({ claimed: 1, parked: 1 });
    expect((await o2.parked())[0]).toMatchObject({ attempts: 2, lastError: 'socket closed' });
  });

  it('NOTIFY wakes an idle relay long before its poll, and LISTEN comes back after its connection is killed', async () => {
    const outbox = await fresh();
    const { publisher, seen } = recordingPublisher();
    const errors: unknown[] = [];
    const relay = createRelay({ outbox, publisher, poll: '60s', onError: (e) => errors.push(e) });
    await relay.start();
    await new Promise((r) => setTimeout(r, 300)); // LISTEN is set up, the first (empty) claim done
    const t0 = Date.now();
    await addAll(env.pool, outbox, [{ topic: 't', payload: 'first' }]);
    await until('first published', () => seen.length === 1, 10_000);
    expect(seen[0]!.at - t0).toBeLessThan(5000); // the poll is 60 s: only NOTIFY can explain it

    await env.pool.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid() AND datname = current_database() AND query LIKE $1",
      [`%${env.schema}%`],
    );
    await until('listen error reported', () => errors.length > 0, 10_000);
    await new Promise((r) => setTimeout(r, 500)); // reconnect (100 ms backoff)
    await addAll(env.pool, outbox, [{ topic: 't', payload: 'second' }]);
    await until('second published', () => seen.length === 2, 10_000);
    await relay.stop();

    // the same relay without LISTEN sleeps through its whole poll
    const { publisher: p2, seen: seen2 } = recordingPublisher();
    const poller = createRelay({ outbox, publisher: p2, poll: '60s', listen: false });
    await poller.start();
    await new Promise((r) => setTimeout(r, 300));
    await addAll(env.pool, outbox, [{ topic: 't', payload: 'third' }]);
    await new Promise((r) => setTimeout(r, 1000));
    expect(seen2).toHaveLength(0);
    await poller.stop();
  }, 30_000);

  it('without LISTEN the relay polls; retention deletes published events, never pending ones', async () => {
    const outbox = await fresh();
    const { publisher, seen } = recordingPublisher();
    const relay = createRelay({ outbox, publisher, poll: 50, listen: false });
    await relay.start();
    await addAll(env.pool, outbox, [
      { topic: 't', payload: 1 },
      { topic: 't', payload: 2 },
    ]);
    await until('polled', () => seen.length === 2, 10_000);
    await relay.stop();
    expect(relay.running).toBe(false);
    await addAll(env.pool, outbox, [{ topic: 't', payload: 3 }]);
    expect(await outbox.purge(0)).toBe(2);
    expect(await outbox.stats()).toEqual({ pending: 1, published: 0, parked: 0 });
  });

  it('delayMs holds an event back; a pool of one connection makes the relay poll instead of LISTEN', async () => {
    const outbox = await fresh();
    await addAll(env.pool, outbox, [{ topic: 't', payload: 'later', delayMs: 400 }]);
    const { publisher, seen } = recordingPublisher();
    const relay = createRelay({ outbox, publisher, listen: false });
    expect(await relay.runOnce()).toMatchObject({ claimed: 0 });
    await new Promise((r) => setTimeout(r, 450));
    expect(await relay.runOnce()).toMatchObject({ claimed: 1, published: 1 });
    expect(seen.map((x) => x.payload)).toEqual(['later']);
    const pg = await import('pg');
    const one = new pg.default.Pool({ connectionString: SERVICES.postgres, max: 1 });
    expect(postgresOutbox({ pool: one, schema: env.schema }).listen).toBeUndefined();
    expect(outbox.listen).toBeTypeOf('function');
    await one.end();
  });

  it('database errors reach onError and the relay backs off, then recovers and publishes what waited', async () => {
    const outbox = await fresh();
    const table = outbox.table;
    const { publisher, seen } = recordingPublisher();
    const errors: unknown[] = [];
    const relay = createRelay({ outbox, publisher, poll: 20, listen: false, onError: (e) => errors.push(e) });
    await relay.start();
    await env.pool.query(`ALTER TABLE ${table} RENAME TO gone`);
    await until('claims failing', () => errors.length >= 2, 10_000);
    expect(String(errors[0])).toMatch(/does not exist/);
    await env.pool.query(`ALTER TABLE ${env.schema}.gone RENAME TO ${table.split('.').at(-1)}`);
    await addAll(env.pool, outbox, [{ topic: 't', payload: 'waited' }]);
    await until('recovered', () => seen.length === 1, 10_000);
    await relay.stop();
  });

  it('keeps seq order = commit order per key: a later transaction of the same key waits for an earlier one', async () => {
    const outbox: PostgresOutbox = await fresh();
    const a = await env.pool.connect();
    const b = await env.pool.connect();
    await a.query('BEGIN');
    await b.query('BEGIN');
    await outbox.add(a, { topic: 't', key: 'k', payload: 'a' });
    let bDone = false;
    const bAdd = outbox.add(b, { topic: 't', key: 'k', payload: 'b' }).then(() => (bDone = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(bDone).toBe(false); // blocked on a's key lock
    await a.query('COMMIT');
    await bAdd;
    await b.query('COMMIT');
    a.release();
    b.release();
    const { publisher, seen } = recordingPublisher();
    const relay = createRelay({ outbox, publisher, listen: false });
    await relay.runOnce();
    await relay.runOnce();
    expect(seen.map((s) => s.payload)).toEqual(['a', 'b']);
  });
});

/**
 * The publishers against the real brokers, fed by a Postgres outbox and its relay: the
 * broker's dedup id is the event id (NATS `Nats-Msg-Id`, BullMQ job id, AMQP `messageId`,
 * the webhook's `Idempotency-Key`), so an event published twice is stored (or counted by the
 * consumer) once.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  amqpPublisher,
  bullmqPublisher,
  createRelay,
  natsPublisher,
  type OutboxEvent,
  postgresOutbox,
  webhookPublisher,
} from '../../src/queue/outbox/index.ts';
import { serviceAvailable } from '../helpers/services.ts';
import { bullQueue, natsStream, rabbitQueue } from './outbox-brokers.ts';
import { addAll, freshSchema, until } from './outbox-helpers.ts';

const up =
  (await serviceAvailable('postgres')) &&
  (await serviceAvailable('nats')) &&
  (await serviceAvailable('redis')) &&
  (await serviceAvailable('amqp'));

describe.skipIf(!up)('outbox publishers on real brokers', () => {
  let env: Awaited<ReturnType<typeof freshSchema>>;
  let n = 0;
  const fresh = async () => {
    const outbox = postgresOutbox({ pool: env.pool, schema: env.schema, table: `b${n++}` });
    await outbox.migrate();
    return outbox;
  };
  // no ordering key: a claim takes one event per key, and these tests want whole batches
  const event = (i: number, topic: string) => ({ topic, payload: { i } });
  beforeAll(async () => {
    env = await freshSchema();
  });
  afterAll(async () => {
    await env?.drop();
  });

  it('NATS: a batch published at once with Nats-Msg-Id = event id and headers; a republish is a duplicate, stored once', async () => {
    const nats = await natsStream();
    try {
      const outbox = await fresh();
      const ids = await addAll(
        env.pool,
        outbox,
        Array.from({ length: 40 }, (_, i) => event(i, nats.subject)),
      );
      const client = await env.pool.connect();
      await client.query('BEGIN');
      ids.push(await outbox.add(client, { topic: nats.subject, payload: 'h', headers: { 'x-trace': 't1' } }));
      await client.query('COMMIT');
      client.release();
      const publisher = natsPublisher({ js: nats.js, headers: nats.headers });
      const relay = createRelay({ outbox, publisher, batchSize: 100, listen: false });
      expect(await relay.runOnce()).toMatchObject({ claimed: 41, published: 41 });
      // the same events again (as after a relay crash before its mark): the stream drops them
      const again: OutboxEvent[] = ids.map((id, i) => ({
        id,
        topic: nats.subject,
        key: null,
        payload: { again: i },
        headers: {},
        attempts: 2,
        createdAt: 0,
      }));
      expect((await publisher.publish(again, new AbortController().signal)).every((r) => r.ok)).toBe(true);
      const stored = await nats.messages();
      expect(stored.map((m) => m.id)).toEqual(ids);
      expect(stored.some((m) => JSON.stringify(m.payload).includes('again'))).toBe(false);
      expect(stored.at(-1)!.headers['x-trace']).toBe('t1');
    } finally {
      await nats.close();
    }
  });

  it('NATS: an unknown subject (no stream) fails and is retried, then parked after maxAttempts', async () => {
    const nats = await natsStream();
    try {
      const outbox = await fresh();
      await addAll(env.pool, outbox, [{ topic: 'no.stream.here', payload: 1 }]);
      const relay = createRelay({
        outbox,
        publisher: natsPublisher({ js: nats.js, timeout: 1000 }),
        maxAttempts: 2,
        backoff: 1,
        listen: false,
      });
      expect(await relay.runOnce()).toMatchObject({ retried: 1 });
      await new Promise((r) => setTimeout(r, 20));
      expect(await relay.runOnce()).toMatchObject({ parked: 1 });
      expect((await outbox.parked())[0]!.lastError).toBeTruthy();
    } finally {
      await nats.close();
    }
  });

  it('BullMQ: job id = event id; publishing the batch again adds no job', async () => {
    const bull = bullQueue();
    try {
      const outbox = await fresh();
      const ids = await addAll(
        env.pool,
        outbox,
        Array.from({ length: 20 }, (_, i) => event(i, 'claims.intake')),
      );
      const publisher = bullmqPublisher({ queue: bull.queue, jobOptions: { removeOnComplete: false } });
      const relay = createRelay({ outbox, publisher, listen: false });
      expect(await relay.runOnce()).toMatchObject({ published: 20 });
      await outbox.retryParked(); // nothing parked: a no-op
      const batch = ids.map((id) => ({
        id,
        topic: 'claims.intake',
        key: null,
        payload: {},
        headers: {},
        attempts: 2,
        createdAt: 0,
      }));
      expect((await publisher.publish(batch, new AbortController().signal)).every((r) => r.ok)).toBe(true);
      expect(await bull.queue.count()).toBe(20);
      const job = await bull.queue.getJob(ids[3]!);
      expect(job?.data).toEqual({ i: 3 });
      expect(job?.name).toBe('claims.intake');
      // an id BullMQ cannot take is parked, not retried for ever
      const bad = await publisher.publish([{ ...batch[0]!, id: 'a:b' }], new AbortController().signal);
      expect(bad[0]).toMatchObject({ ok: false, park: true });
    } finally {
      await bull.close();
    }
  });

  it('RabbitMQ: messageId = event id with confirms; the connection dropped mid-batch loses nothing, the consumer dedupes the repeats', async () => {
    const rabbit = await rabbitQueue();
    try {
      const outbox = await fresh();
      const ids = await addAll(
        env.pool,
        outbox,
        Array.from({ length: 200 }, (_, i) => ({ topic: rabbit.queue, payload: { i } })),
      );
      let sent = 0;
      let opened = 0;
      const publisher = amqpPublisher({
        channel: async () => {
          const { conn, channel } = await rabbit.confirmChannel();
          opened++;
          const publish = channel.publish.bind(channel);
          // the first connection dies after 60 messages, in the middle of the batch
          channel.publish = ((...args: Parameters<typeof publish>) => {
            const more = publish(...args);
            if (opened === 1 && ++sent === 60)
              (
                conn as unknown as { connection: { stream: { destroy(e: Error): void } } }
              ).connection.stream.destroy(new Error('ECONNRESET (test)'));
            return more;
          }) as typeof channel.publish;
          return channel;
        },
      });
      const relay = createRelay({
        outbox,
        publisher,
        batchSize: 200,
        backoff: 1,
        maxBackoff: 10,
        listen: false,
      });
      const first = await relay.runOnce();
      expect(first.retried).toBeGreaterThan(0); // the drop failed part of the batch
      await until('all published', async () => {
        await relay.runOnce();
        return (await outbox.stats()).published === 200;
      });
      expect(opened).toBeGreaterThanOrEqual(2); // a new connection after the drop
      await new Promise((r) => setTimeout(r, 200));
      const delivered = await rabbit.drain();
      const ledger = new Set(delivered); // the consumer's inbox, keyed by messageId
      expect([...ledger].sort()).toEqual([...ids].sort());
      expect(delivered.length).toBeGreaterThanOrEqual(200);
    } finally {
      await rabbit.close();
    }
  }, 30_000);

  it('RabbitMQ: a message no queue is bound for comes back (mandatory) and fails, instead of being confirmed and lost', async () => {
    const rabbit = await rabbitQueue();
    try {
      const { channel } = await rabbit.confirmChannel();
      const publisher = amqpPublisher({ channel });
      const event = (id: string, topic: string) => ({
        id,
        topic,
        key: null,
        payload: {},
        headers: {},
        attempts: 1,
        createdAt: 0,
      });
      const results = await publisher.publish(
        [event('e1', rabbit.queue), event('e2', `${rabbit.queue}-nobody`)],
        new AbortController().signal,
      );
      expect(results[0]).toEqual({ ok: true });
      expect(results[1]).toMatchObject({ ok: false, error: expect.stringMatching(/unroutable/) });
      expect(await rabbit.drain()).toEqual(['e1']);
    } finally {
      await rabbit.close();
    }
  });

  it('webhook: Idempotency-Key = event id; 2xx published, 5xx/429 retried, other 4xx parked; the receiver acts once per key', async () => {
    const effects = new Map<string, number>();
    const calls: Array<{ key: string; status: number }> = [];
    let flaky = 2;
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const key = req.headers['idempotency-key'] as string;
        const { kind } = JSON.parse(body) as { kind: string };
        let status = 200;
        if (kind === 'bad') status = 422;
        else if (kind === 'flaky' && flaky-- > 0) status = flaky === 1 ? 503 : 429;
        calls.push({ key, status });
        if (status === 200) effects.set(key, (effects.get(key) ?? 0) + 1);
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 422 ? 'amount missing' : 'ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const outbox = await fresh();
      const [good, bad, flakyId] = await addAll(env.pool, outbox, [
        { topic: 'hook', payload: { kind: 'good' } },
        { topic: 'hook', payload: { kind: 'bad' } },
        { topic: 'hook', payload: { kind: 'flaky' } },
      ]);
      const relay = createRelay({
        outbox,
        publisher: webhookPublisher({ url }),
        backoff: 1,
        maxBackoff: 5,
        listen: false,
      });
      await until('settled', async () => {
        await relay.runOnce();
        const s = await outbox.stats();
        return s.pending === 0;
      });
      expect(await outbox.stats()).toEqual({ pending: 0, published: 2, parked: 1 });
      expect((await outbox.parked())[0]).toMatchObject({ id: bad, lastError: 'HTTP 422: amount missing' });
      expect(calls.filter((c) => c.key === flakyId).map((c) => c.status)).toEqual([503, 429, 200]);
      expect(effects).toEqual(
        new Map([
          [good, 1],
          [flakyId, 1],
        ]),
      );
      expect(() => webhookPublisher({ url: 'not a url' })).toThrow();
    } finally {
      server.close();
    }
  });
});

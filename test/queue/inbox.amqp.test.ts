/**
 * `idem/amqp` on a real RabbitMQ, with a Redis store and a Postgres ledger of effects:
 * redelivery after nack; a poison message dead-lettered after N runs; fan-out to two
 * consumers; the connection dropped mid-batch; a consumer SIGKILLed after the outcome was
 * recorded but before the ack, and one SIGKILLed mid-handler; duplicate deliveries racing
 * across two processes.
 */

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { createIdem } from 'idem';
import { idempotentConsumer } from 'idem/amqp';
import { redisStore } from 'idem/redis';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix } from '../stores/fixtures/redis-suite.ts';
import { type Child, createLedger, dropLedger, sleep, startChild, until } from './inbox-fixtures.ts';

const up =
  (await serviceAvailable('amqp')) &&
  (await serviceAvailable('redis')) &&
  (await serviceAvailable('postgres'));
const WORKER = new URL('./inbox-amqp-worker.ts', import.meta.url);
const exec = promisify(execFile);
/** rabbitmqctl on this machine (it talks to the local node): used to close one connection from the broker side. */
const RABBITMQCTL =
  up &&
  (await exec('rabbitmqctl', ['-q', 'status'], { timeout: 15_000 }).then(
    () => true,
    () => false,
  ));
if (up && !RABBITMQCTL)
  console.warn('[idem tests] rabbitmqctl unavailable: skipping the broker-side close test');

describe.skipIf(!up)('idem/amqp', () => {
  const name = uniqueName('idem_amqp');
  const prefix = name;
  let conn: ChannelModel;
  let ch: Channel;
  let ledger: pg.Pool;
  const idem = up
    ? createIdem({ store: redisStore({ url: SERVICES.redis, prefix }), lease: '5s' })
    : (undefined as never);
  const queues: string[] = [];
  const exchanges: string[] = [];
  const children: Child[] = [];
  const extra: ChannelModel[] = [];

  beforeAll(async () => {
    conn = await amqp.connect(SERVICES.amqp);
    ch = await conn.createChannel();
    ledger = await createLedger(name);
  });
  afterAll(async () => {
    for (const c of children) await c.kill();
    // a connection whose socket was destroyed never answers close(): do not wait for it
    for (const c of extra) await Promise.race([c.close().catch(() => {}), sleep(500)]);
    for (const q of queues) await ch.deleteQueue(q).catch(() => {});
    for (const x of exchanges) await ch.deleteExchange(x).catch(() => {});
    await conn?.close().catch(() => {});
    await idem?.close();
    await dropLedger(ledger, name);
    const admin = new Redis(SERVICES.redis);
    await deletePrefix(admin, prefix);
    admin.disconnect();
  });

  const queue = async (suffix: string, args: Record<string, unknown> = {}) => {
    const q = `${name}.${suffix}`;
    await ch.assertQueue(q, { durable: false, arguments: args });
    queues.push(q);
    return q;
  };
  const exchange = async (suffix: string) => {
    const x = `${name}.${suffix}`;
    await ch.assertExchange(x, 'fanout', { durable: false });
    exchanges.push(x);
    return x;
  };
  const send = (q: string, id: string, body = id) => ch.sendToQueue(q, Buffer.from(body), { messageId: id });
  const rows = async (where = 'true') =>
    (await ledger.query(`SELECT * FROM "${name}".ledger WHERE ${where} ORDER BY n`)).rows;

  it('a failed run is nacked and requeued; the redelivery runs it; a republished copy is acked as a duplicate', async () => {
    const q = await queue('retry');
    let failed = false;
    const effects: string[] = [];
    const statuses: string[] = [];
    const { consumerTag } = await ch.consume(
      q,
      idempotentConsumer(
        idem,
        ch,
        { consumer: 'retry', retryDelay: () => 20, onResult: (r) => statuses.push(r.status) },
        async (msg, ctx) => {
          if (!failed) {
            failed = true;
            throw new Error('transient');
          }
          effects.push(`${msg.properties.messageId}@${ctx.attempt}`);
        },
      ),
    );
    send(q, 'r1');
    expect(await until(() => statuses.includes('processed'))).toBe(true);
    send(q, 'r1');
    expect(await until(() => statuses.includes('duplicate'))).toBe(true);
    await ch.cancel(consumerTag);
    expect(statuses).toEqual(['retry', 'processed', 'duplicate']);
    expect(effects).toEqual(['r1@2']);
    expect((await ch.checkQueue(q)).messageCount).toBe(0);
  });

  it('a poison message goes to the dead-letter exchange after maxAttempts runs; the parked state is recorded', async () => {
    const dlx = await exchange('dlx');
    const dlq = await queue('dlq');
    await ch.bindQueue(dlq, dlx, '');
    const q = await queue('poison', { 'x-dead-letter-exchange': dlx });
    let runs = 0;
    const { consumerTag } = await ch.consume(
      q,
      idempotentConsumer(idem, ch, { consumer: 'poison', maxAttempts: 3, retryDelay: () => 10 }, async () => {
        runs++;
        throw new Error('unparseable');
      }),
    );
    send(q, 'p1');
    let dead: false | amqp.GetMessage = false;
    const poll = async () => {
      dead = await ch.get(dlq, { noAck: true });
      return dead !== false;
    };
    expect(await until(poll)).toBe(true);
    await ch.cancel(consumerTag);
    expect(runs).toBe(3);
    const d = dead as unknown as ConsumeMessage;
    expect(d.properties.messageId).toBe('p1');
    expect(d.properties.headers?.['x-death']?.[0]?.reason).toBe('rejected');
    const again = await idem.consumeOnce({ consumer: 'poison', messageId: 'p1' }, async () => runs++);
    expect(again).toMatchObject({ status: 'parked', duplicate: true, attempts: 3 });
  });

  it('a message without an id, or refused by consumeOnce, is dead-lettered, reported, never thrown', async () => {
    const dlx = await exchange('dlx2');
    const dlq = await queue('dlq2');
    await ch.bindQueue(dlq, dlx, '');
    const q = await queue('refused', { 'x-dead-letter-exchange': dlx });
    const statuses: string[] = [];
    const errors: unknown[] = [];
    const tags: string[] = [];
    const opts = {
      onResult: (r: { status: string }) => statuses.push(r.status),
      onError: (e: unknown) => errors.push(e),
    };
    tags.push(
      (
        await ch.consume(
          q,
          idempotentConsumer(idem, ch, { consumer: 'refused', ...opts }, async () => 1),
        )
      ).consumerTag,
    );
    ch.sendToQueue(q, Buffer.from('no id')); // no messageId property
    expect(await until(() => statuses.includes('no_message_id'))).toBe(true);
    await ch.cancel(tags[0]!);
    // a bad option is refused when the consumer is built, naming the option meant
    expect(() =>
      idempotentConsumer(idem, ch, { consumer: 'refused', maxAttemps: 3 } as never, async () => 1),
    ).toThrow(/unknown option maxAttemps — did you mean maxAttempts\?/);
    // an outcome over maxOutcomeBytes: consumeOnce refuses it; dead-lettered and reported
    const small = createIdem({ store: redisStore({ url: SERVICES.redis, prefix }), maxOutcomeBytes: 16 });
    const bad = idempotentConsumer(small, ch, { consumer: 'refused', ...opts }, async () => 'x'.repeat(100));
    tags.push((await ch.consume(q, bad)).consumerTag);
    send(q, 'refused-1');
    expect(await until(() => errors.length === 1)).toBe(true);
    expect(String(errors[0])).toMatch(/OutcomeTooLargeError|over the limit/);
    await small.close();
    const dead: string[] = [];
    expect(
      await until(async () => {
        const m = await ch.get(dlq, { noAck: true });
        if (m) dead.push(m.content.toString());
        return dead.length === 2;
      }),
    ).toBe(true);
    expect(dead.sort()).toEqual(['no id', 'refused-1']);
  });

  it('fan-out: each of two consumers runs a message once, however often it is published', async () => {
    const x = await exchange('fan');
    const runs: string[] = [];
    const settled: string[] = [];
    const tags: string[] = [];
    for (const consumer of ['billing', 'audit']) {
      const q = await queue(`fan.${consumer}`);
      await ch.bindQueue(q, x, '');
      const onResult = (r: { status: string }) => {
        if (r.status === 'processed' || r.status === 'duplicate') settled.push(consumer);
      };
      const { consumerTag } = await ch.consume(
        q,
        idempotentConsumer(idem, ch, { consumer, onResult }, async () => {
          runs.push(consumer);
        }),
      );
      tags.push(consumerTag);
    }
    for (let i = 0; i < 3; i++) ch.publish(x, '', Buffer.from('{}'), { messageId: 'order-7' });
    // in-progress answers retry; wait until every copy is acked (3 per consumer)
    expect(await until(() => runs.length === 2 && settled.length >= 6)).toBe(true);
    for (const t of tags) await ch.cancel(t);
    expect(runs.sort()).toEqual(['audit', 'billing']);
  });

  it('a connection dropped mid-batch: every message takes effect once; recorded-but-unacked ones are acked as duplicates', async () => {
    const q = await queue('drop');
    const n = 20;
    for (let i = 0; i < n; i++) send(q, `d${i}`);
    const effects = new Map<string, number>();
    const statuses: string[] = [];
    const consumeWith = async (dropAfter?: number) => {
      const c = await amqp.connect(SERVICES.amqp);
      c.on('error', () => {});
      extra.push(c);
      const channel = await c.createChannel();
      channel.on('error', () => {});
      await channel.prefetch(5);
      let processed = 0;
      await channel.consume(
        q,
        idempotentConsumer(
          idem,
          channel,
          {
            consumer: 'drop',
            onResult: (r) => {
              statuses.push(r.status);
              // the network drops right after an outcome is recorded, before its ack
              if (r.status === 'processed' && ++processed === dropAfter) {
                (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
              }
            },
          },
          async (msg) => {
            const id = msg.properties.messageId as string;
            effects.set(id, (effects.get(id) ?? 0) + 1);
            await sleep(5);
          },
        ),
      );
    };
    await consumeWith(5);
    expect(await until(() => statuses.length >= 5)).toBe(true);
    await consumeWith();
    expect(
      await until(async () => effects.size === n && (await ch.checkQueue(q)).messageCount === 0, 20_000),
    ).toBe(true);
    await sleep(200);
    expect([...effects.values()].every((v) => v === 1)).toBe(true);
    expect(statuses.filter((s) => s === 'processed')).toHaveLength(n);
    expect(statuses.filter((s) => s === 'duplicate').length).toBeGreaterThanOrEqual(1);
  });

  it.skipIf(!RABBITMQCTL)(
    'the broker closes the connection mid-batch (rabbitmqctl close_connection): every message takes effect once',
    async () => {
      const q = await queue('brokerclose');
      const n = 30;
      for (let i = 0; i < n; i++) send(q, `b${i}`);
      const effects = new Map<string, number>();
      const statuses: string[] = [];
      const connectionName = `${name}-victim`;
      const consume = async (clientProperties?: Record<string, string>) => {
        const c = await amqp.connect(SERVICES.amqp, clientProperties ? { clientProperties } : {});
        c.on('error', () => {});
        extra.push(c);
        const channel = await c.createChannel();
        channel.on('error', () => {});
        await channel.prefetch(4);
        await channel.consume(
          q,
          idempotentConsumer(
            idem,
            channel,
            { consumer: 'brokerclose', onResult: (r) => statuses.push(r.status) },
            async (msg) => {
              const id = msg.properties.messageId as string;
              effects.set(id, (effects.get(id) ?? 0) + 1);
              await sleep(40); // slow enough that the close lands mid-batch
            },
          ),
        );
        return c;
      };
      const victim = await consume({ connection_name: connectionName });
      const closed = new Promise((r) => victim.once('close', r));
      expect(await until(() => statuses.length >= 3)).toBe(true);
      const list = await exec('rabbitmqctl', ['-q', 'list_connections', 'pid', 'client_properties']);
      const pid = list.stdout
        .split('\n')
        .find((l) => l.includes(connectionName))
        ?.split('\t')[0];
      expect(pid).toBeDefined();
      await exec('rabbitmqctl', ['-q', 'close_connection', pid!, 'idem test: broker-side close']);
      await closed;
      await consume();
      expect(
        await until(async () => effects.size === n && (await ch.checkQueue(q)).messageCount === 0, 30_000),
      ).toBe(true);
      await sleep(300);
      expect([...effects.values()].every((v) => v === 1)).toBe(true);
      expect(statuses.filter((st) => st === 'processed')).toHaveLength(n);
    },
    30_000,
  );

  const worker = (queue: string, mode: string, over: Record<string, unknown> = {}) => {
    const c = startChild(WORKER, {
      amqp: SERVICES.amqp,
      queue,
      consumer: 'kill',
      redis: SERVICES.redis,
      prefix,
      pg: SERVICES.postgres,
      schema: name,
      mode,
      leaseMs: 1000,
      handlerMs: 0,
      ...over,
    });
    children.push(c);
    return c;
  };

  it('SIGKILL after the outcome is recorded, before the ack: the redelivery is acked with the recorded outcome', async () => {
    const q = await queue('kill1');
    const child = worker(q, 'die-after-record');
    await child.waitFor(/^ready$/);
    send(q, 'k1');
    await child.waitFor(/^processed k1$/);
    await child.kill();
    const results: Array<{ status: string; value?: unknown }> = [];
    const { consumerTag } = await ch.consume(
      q,
      idempotentConsumer(
        idem,
        ch,
        { consumer: 'kill', onResult: (r) => results.push(r) },
        async () => 'rerun',
      ),
    );
    expect(await until(() => results.length === 1)).toBe(true);
    await ch.cancel(consumerTag);
    expect(results[0]).toMatchObject({ status: 'duplicate', value: { by: child.child.pid } });
    expect(await rows(`message_id = 'k1'`)).toHaveLength(1);
  });

  it('SIGKILL mid-handler: after the lease the redelivery runs again with mayHaveRun and the same downstreamKey', async () => {
    const q = await queue('kill2');
    const child = worker(q, 'die-mid-handler');
    await child.waitFor(/^ready$/);
    send(q, 'k2');
    await child.waitFor(/^effect k2$/);
    await child.kill();
    const rerun = worker(q, 'normal');
    await rerun.waitFor(/^processed k2$/, 20_000);
    const effects = await rows(`message_id = 'k2'`);
    expect(effects.map((r) => r.may_have_run)).toEqual([false, true]);
    // an external API deduplicating on downstreamKey sees one request
    expect(new Set(effects.map((r) => r.downstream_key)).size).toBe(1);
  });

  it('duplicate deliveries racing in two processes: each message takes effect once', async () => {
    const x = await exchange('race');
    const qs = [await queue('race.a'), await queue('race.b')];
    for (const q of qs) await ch.bindQueue(q, x, '');
    const racers = qs.map((q) => worker(q, 'normal', { consumer: 'race', handlerMs: 50 }));
    for (const r of racers) await r.waitFor(/^ready$/);
    const n = 10;
    for (let i = 0; i < n; i++) ch.publish(x, '', Buffer.from('{}'), { messageId: `race-${i}` });
    const acked = () => racers.flatMap((r) => r.lines).filter((l) => /^(processed|duplicate) /.test(l));
    expect(await until(() => acked().length === 2 * n, 30_000)).toBe(true);
    const effects = await rows(`consumer = 'race'`);
    expect(effects).toHaveLength(n);
    expect(new Set(effects.map((r) => r.message_id)).size).toBe(n);
    expect(acked().filter((l) => l.startsWith('processed'))).toHaveLength(n);
  });
});

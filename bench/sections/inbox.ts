/**
 * Issue 11: the inbox's overhead per message next to the raw consumer, on each broker.
 * Each round pre-publishes `n` messages, then times one consumer draining them (16 in flight):
 * the raw consumer (handler + ack) against the inbox adapter on the Redis store, and, for the
 * SQL fast path, a raw Postgres transaction (effect row + COMMIT + ack) against
 * `consumeOnceTx` writing the same row with its mark. Variants alternate, order rotated per round.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import amqp from 'amqplib';
import { Queue, Worker } from 'bullmq';
import { createIdem, type Idem } from 'idem';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { RunConfig } from '../lib/config.ts';
import { installedVersion, reachable, SERVICES, sourceExists } from '../lib/env.ts';
import { unlinkMatching } from '../lib/redis-keys.ts';
import { emptySection, fmtOps, fmtPct, type SectionResult } from '../lib/report.ts';

const IN_FLIGHT = 16;
/** One timed drain: answers elapsed ms for `n` messages. */
type Drain = (n: number, round: number) => Promise<number>;

export async function inboxSection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('inbox', 'Inbox overhead per message vs the raw consumer (issue 11)');
  if (!sourceExists('src/core/inbox.ts')) {
    s.skipped = 'src/core/inbox.ts does not exist yet';
    return s;
  }
  const { redisStore } = await import('idem/redis');
  const { idempotentProcessor } = await import('idem/bullmq');
  const { idempotentConsumer } = await import('idem/amqp');
  const { idempotentHandler } = await import('idem/nats');
  const { consumeOnceTx } = await import('idem/inbox-sql');
  const tag = `idem_bench_inbox_${process.pid}_${randomBytes(3).toString('hex')}`;
  const n = cfg.quick ? 200 : Math.max(500, Math.round(cfg.durationMs / 2));
  const rounds = Math.max(2, cfg.rounds);
  const redisUp = await reachable(SERVICES.redis);
  if (!redisUp) {
    s.skipped = `redis (the inbox's store) is not reachable at ${SERVICES.redis}`;
    return s;
  }
  const idem: Idem = createIdem({ store: redisStore({ url: SERVICES.redis, prefix: `${tag}_idem` }) });
  const cleanups: Array<() => Promise<unknown>> = [];
  const rows: string[][] = [];
  const compare = async (
    broker: string,
    raw: Drain,
    inbox: Drain,
    target?: number,
    label = 'inbox, Redis store',
  ) => {
    const ms = { raw: 0, inbox: 0 };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? (['raw', 'inbox'] as const) : (['inbox', 'raw'] as const);
      for (const v of order) ms[v] += await (v === 'raw' ? raw : inbox)(n, r);
    }
    const rawRate = (n * rounds * 1000) / ms.raw;
    const inboxRate = (n * rounds * 1000) / ms.inbox;
    const ratio = inboxRate / rawRate;
    rows.push([broker, 'raw consumer', fmtOps(rawRate), '']);
    rows.push([broker, label, fmtOps(inboxRate), fmtPct(ratio)]);
    if (target !== undefined) {
      s.checks.push({
        target: `${broker}, ${label}: ≥ ${target * 100} % of raw consumer throughput`,
        actual: fmtPct(ratio),
        met: ratio >= target,
      });
    }
  };

  try {
    // BullMQ: a Worker with concurrency 16; raw returns, the inbox wraps the same processor
    const connection = { url: SERVICES.redis, maxRetriesPerRequest: null };
    const bull =
      (wrap: boolean): Drain =>
      async (count, round) => {
        const name = `${tag}_bq_${wrap ? 'inbox' : 'raw'}_${round}`;
        const queue = new Queue(name, { connection });
        await queue.addBulk(
          Array.from({ length: count }, (_, i) => ({
            name: 'm',
            data: { i },
            opts: { jobId: `${round}-${i}` },
          })),
        );
        const processor = async (job: { data: { i: number } }) => job.data.i;
        let done = 0;
        let elapsed = 0;
        const finished = new Promise<void>((resolve) => {
          const started = performance.now();
          const worker = new Worker(
            name,
            wrap ? idempotentProcessor(idem, { consumer: 'bench' }, processor) : processor,
            {
              connection,
              concurrency: IN_FLIGHT,
            },
          );
          worker.on('completed', () => {
            if (++done === count) {
              elapsed = performance.now() - started;
              void worker.close().then(() => resolve());
            }
          });
        });
        await finished;
        await queue.obliterate({ force: true });
        await queue.close();
        return elapsed;
      };
    await compare(`BullMQ ${installedVersion('bullmq')}`, bull(false), bull(true), 0.7);

    // RabbitMQ: prefetch 16, ack after the handler
    if (await reachable(SERVICES.amqp)) {
      const conn = await amqp.connect(SERVICES.amqp);
      cleanups.push(() => conn.close());
      const ch = await conn.createChannel();
      await ch.prefetch(IN_FLIGHT);
      const drainAmqp =
        (consume: (queue: string, count: number, done: () => void) => Promise<void>): Drain =>
        async (count, round) => {
          const q = `${tag}.${round}.${randomBytes(2).toString('hex')}`;
          await ch.assertQueue(q, { durable: false });
          for (let i = 0; i < count; i++) ch.sendToQueue(q, Buffer.from('{}'), { messageId: `${q}-${i}` });
          await ch.checkQueue(q);
          const started = performance.now();
          await new Promise<void>((resolve) => void consume(q, count, resolve));
          const elapsed = performance.now() - started;
          await ch.deleteQueue(q);
          return elapsed;
        };
      const rawAmqp = drainAmqp(async (q, count, done) => {
        let seen = 0;
        const { consumerTag } = await ch.consume(q, (msg) => {
          if (!msg) return;
          ch.ack(msg);
          if (++seen === count) void ch.cancel(consumerTag).then(done);
        });
      });
      const inboxAmqp = drainAmqp(async (q, count, done) => {
        let seen = 0;
        const onResult = () => {
          if (++seen === count) setImmediate(() => void ch.cancel(consumerTag).then(done));
        };
        const { consumerTag } = await ch.consume(
          q,
          idempotentConsumer(idem, ch, { consumer: 'bench', onResult }, () => 1),
        );
      });
      await compare(`RabbitMQ (amqplib ${installedVersion('amqplib')})`, rawAmqp, inboxAmqp);

      // the SQL fast path: the handler writes a row in Postgres, raw in its own transaction
      if (await reachable(SERVICES.postgres)) {
        const pool = new pg.Pool({ connectionString: SERVICES.postgres, max: IN_FLIGHT });
        cleanups.push(async () => {
          await pool.query(`DROP SCHEMA IF EXISTS ${tag} CASCADE`);
          await pool.end();
        });
        await pool.query(`CREATE SCHEMA ${tag}`);
        await pool.query(`CREATE TABLE ${tag}.effects (id text)`);
        const effect = async (tx: { query(t: string, v: unknown[]): Promise<unknown> }, id: string) => {
          await tx.query(`INSERT INTO ${tag}.effects (id) VALUES ($1)`, [id]);
        };
        const rawSql = drainAmqp(async (q, count, done) => {
          let seen = 0;
          const { consumerTag } = await ch.consume(q, async (msg) => {
            if (!msg) return;
            const client = await pool.connect();
            await client.query('BEGIN');
            await effect(client, msg.properties.messageId);
            await client.query('COMMIT');
            client.release();
            ch.ack(msg);
            if (++seen === count) void ch.cancel(consumerTag).then(done);
          });
        });
        const fastSql = drainAmqp(async (q, count, done) => {
          let seen = 0;
          const { consumerTag } = await ch.consume(q, async (msg) => {
            if (!msg) return;
            const id = msg.properties.messageId as string;
            const r = await consumeOnceTx(
              pool,
              { consumer: 'bench', messageId: id },
              (tx) => effect(tx, id),
              {
                table: `${tag}.idem_inbox`,
              },
            );
            if (r.next === 'ack') ch.ack(msg);
            if (++seen === count) void ch.cancel(consumerTag).then(done);
          });
        });
        await compare('RabbitMQ + Postgres effect', rawSql, fastSql, 0.9, 'SQL fast path (consumeOnceTx)');
      } else s.notes.push('postgres unreachable: SQL fast path skipped');
    } else s.notes.push('rabbitmq unreachable: skipped');

    // NATS JetStream: consume() with 16 handlers in flight; raw acks, the inbox ackAcks
    if (await reachable(SERVICES.nats)) {
      const nc = await natsConnect({ servers: SERVICES.nats.replace(/^nats:\/\//, '') });
      cleanups.push(() => nc.close());
      const jsm = await jetstreamManager(nc);
      const js = jetstream(nc);
      const drainNats =
        (handle: (m: import('@nats-io/jetstream').JsMsg) => Promise<unknown>): Drain =>
        async (count, round) => {
          const stream = `${tag}_${round}_${randomBytes(2).toString('hex')}`;
          await jsm.streams.add({ name: stream, subjects: [`${stream}.x`] });
          await Promise.all(
            Array.from({ length: count }, (_, i) => js.publish(`${stream}.x`, '{}', { msgID: `${i}` })),
          );
          await jsm.consumers.add(stream, { durable_name: 'bench', ack_policy: AckPolicy.Explicit });
          const messages = await (await js.consumers.get(stream, 'bench')).consume({
            max_messages: IN_FLIGHT * 4,
          });
          const started = performance.now();
          let seen = 0;
          let inFlight = 0;
          let freed: (() => void) | undefined; // wakes the loop when a slot frees up
          await new Promise<void>((resolve) => {
            void (async () => {
              for await (const m of messages) {
                while (inFlight >= IN_FLIGHT) await new Promise<void>((r) => (freed = r));
                inFlight++;
                void handle(m).finally(() => {
                  inFlight--;
                  freed?.();
                  freed = undefined;
                  if (++seen === count) resolve();
                });
              }
            })();
          });
          const elapsed = performance.now() - started;
          await messages.close();
          await jsm.streams.delete(stream);
          return elapsed;
        };
      const inboxHandle = idempotentHandler(idem, { consumer: 'bench' }, () => 1);
      await compare(
        `NATS JetStream (@nats-io/jetstream ${installedVersion('@nats-io/jetstream')})`,
        drainNats(async (m) => m.ack()),
        drainNats((m) => inboxHandle(m)),
        0.7,
      );
    } else s.notes.push('nats unreachable: skipped');
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await idem.close();
    const admin = new Redis(SERVICES.redis);
    for (const pattern of [`${tag}*`, `bull:${tag}*`]) await unlinkMatching(admin, pattern);
    admin.disconnect();
  }
  s.tables.push({
    title: `Messages per second draining ${n} pre-published messages, ${IN_FLIGHT} in flight, ${rounds} rounds`,
    columns: ['broker', 'consumer', 'msg/s', 'of raw'],
    rows,
  });
  s.facts.push(
    `bullmq ${installedVersion('bullmq')}, amqplib ${installedVersion('amqplib')}, @nats-io/jetstream ${installedVersion('@nats-io/jetstream')}, ioredis ${installedVersion('ioredis')}, pg ${installedVersion('pg')}`,
  );
  s.notes.push(
    'Raw consumers do the minimum: BullMQ returns, RabbitMQ acks, NATS ack() (fire-and-forget); the inbox adds a claim + complete on the Redis store per message (and NATS waits for ackAck).',
  );
  return s;
}

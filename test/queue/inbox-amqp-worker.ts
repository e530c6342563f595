/**
 * A consumer process for the AMQP inbox tests: consumes `queue` with `idempotentConsumer`
 * over a Redis store; each run appends a row to a Postgres ledger (the independent record
 * of effects). Modes: `normal`; `die-after-record` (blocks once the outcome is recorded,
 * before the ack, so the test can SIGKILL it there); `die-mid-handler` (blocks after the
 * effect, before the outcome is recorded).
 *
 * argv[2]: JSON { amqp, queue, consumer, redis, prefix, pg, schema, mode, leaseMs, handlerMs }
 */

import amqp from 'amqplib';
import { createIdem } from 'idem';
import { idempotentConsumer } from 'idem/amqp';
import { redisStore } from 'idem/redis';
import pg from 'pg';

const cfg = JSON.parse(process.argv[2]!) as {
  amqp: string;
  queue: string;
  consumer: string;
  redis: string;
  prefix: string;
  pg: string;
  schema: string;
  mode: 'normal' | 'die-after-record' | 'die-mid-handler';
  leaseMs: number;
  handlerMs: number;
};
const block = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // freeze: no ack, no heartbeat
const pool = new pg.Pool({ connectionString: cfg.pg, max: 4 });
const idem = createIdem({ store: redisStore({ url: cfg.redis, prefix: cfg.prefix }), lease: cfg.leaseMs });
const conn = await amqp.connect(cfg.amqp);
const channel = await conn.createChannel();
await channel.prefetch(8);
await channel.consume(
  cfg.queue,
  idempotentConsumer(
    idem,
    channel,
    {
      consumer: cfg.consumer,
      maxRequeueDelay: 100,
      onResult: (r, msg) => {
        process.stdout.write(`${r.status} ${msg.properties.messageId}\n`);
        if (cfg.mode === 'die-after-record' && r.status === 'processed') block();
      },
    },
    async (msg, ctx) => {
      await pool.query(
        `INSERT INTO "${cfg.schema}".ledger (message_id, consumer, pid, may_have_run, downstream_key) VALUES ($1, $2, $3, $4, $5)`,
        [msg.properties.messageId, cfg.consumer, process.pid, ctx.mayHaveRun, ctx.downstreamKey],
      );
      if (cfg.mode === 'die-mid-handler') {
        process.stdout.write(`effect ${msg.properties.messageId}\n`);
        block();
      }
      if (cfg.handlerMs) await new Promise((r) => setTimeout(r, cfg.handlerMs));
      return { by: process.pid };
    },
  ),
);
process.stdout.write('ready\n');
process.on('SIGTERM', async () => {
  await channel.close().catch(() => {});
  await conn.close().catch(() => {});
  await idem.close();
  await pool.end();
  process.exit(0);
});

/**
 * A relay process of the pipeline: the Postgres outbox to RabbitMQ (messageId = event id,
 * publisher confirms), woken by NOTIFY. Two of them run at once. Stops gracefully on SIGTERM.
 * Chaos: kills its own broker connection after a few batches; the publisher opens a new one.
 */
import amqp from 'amqplib';
import { amqpPublisher, createRelay, postgresOutbox } from 'idem/outbox';
import { type Config, openPool, random } from './shared.ts';

const cfg = JSON.parse(process.argv[2]!) as Config & { slot: number };

// exit with the parent: an orphan would poll for ever
const parent = process.ppid;
setInterval(() => process.ppid !== parent && process.exit(0), 500).unref();
const rand = random(cfg.seed * 31 + cfg.slot);
const pool = openPool(cfg, 3);
const connections: amqp.ChannelModel[] = [];

const publisher = amqpPublisher({
  channel: async () => {
    const conn = await amqp.connect(cfg.amqp);
    conn.on('error', () => {});
    connections.push(conn);
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => {});
    return ch;
  },
});
const relay = createRelay({
  outbox: postgresOutbox({ pool, schema: cfg.run }),
  publisher,
  batchSize: 20,
  poll: 200,
  lease: '3s',
  backoff: 20,
  maxBackoff: 500,
  signals: ['SIGTERM'],
  onError: () => {},
  onBatch: (b) => {
    if (b.retried) console.log(JSON.stringify({ relay: cfg.slot, retried: b.retried }));
    if (cfg.chaos && rand() < 0.1) {
      console.log(JSON.stringify({ chaos: 'relay-connection' }));
      const conn = connections.at(-1) as unknown as { connection: { stream: { destroy(e: Error): void } } };
      conn?.connection.stream.destroy(new Error('chaos: relay connection killed'));
    }
  },
});
await relay.start();
console.log(JSON.stringify({ relayReady: cfg.slot }));
process.once('SIGTERM', async () => {
  while (relay.running) await new Promise((r) => setTimeout(r, 10));
  for (const c of connections) await c.close().catch(() => {});
  await pool.end();
});

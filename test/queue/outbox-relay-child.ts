/**
 * A relay in its own process, for the crash and shutdown tests. Argument: JSON config.
 * mode 'hang-after-publish': publishes a batch, prints `published N` and never marks it (the
 * parent SIGKILLs it there). mode 'slow': prints `batch N`, waits `delayMs`, then publishes;
 * stops on SIGTERM through the relay's `signals` option, prints `stopped` and exits. mode
 * 'count': prints `ok N` after each batch (N events the broker confirmed).
 */
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import amqp from 'amqplib';
import { amqpPublisher, createRelay, natsPublisher, type Publisher, postgresOutbox } from 'idem/outbox';
import pg from 'pg';

const cfg = JSON.parse(process.argv[2]!) as {
  pg: string;
  schema: string;
  table: string;
  broker: 'nats' | 'amqp';
  url: string;
  mode: 'hang-after-publish' | 'slow' | 'count';
  lease: number;
  delayMs?: number;
};
const pool = new pg.Pool({ connectionString: cfg.pg, max: 3 });

// exit with the parent: an orphan would poll for ever
const parent = process.ppid;
setInterval(() => process.ppid !== parent && process.exit(0), 500).unref();
pool.on('error', () => {});
let close: () => Promise<void>;
let inner: Publisher;
if (cfg.broker === 'nats') {
  const nc = await connect({ servers: cfg.url.replace('nats://', '') });
  inner = natsPublisher({ js: jetstream(nc) });
  close = () => nc.close();
} else {
  const conn = await amqp.connect(cfg.url);
  inner = amqpPublisher({ channel: await conn.createConfirmChannel() });
  close = () => conn.close();
}
const publisher: Publisher = {
  name: `child-${inner.name}`,
  async publish(events, signal) {
    if (cfg.mode === 'slow') {
      console.log(`batch ${events.length}`);
      await new Promise((r) => setTimeout(r, cfg.delayMs ?? 1000));
    }
    const results = await inner.publish(events, signal);
    if (cfg.mode === 'count') console.log(`ok ${results.filter((r) => r.ok).length}`);
    if (cfg.mode === 'hang-after-publish') {
      console.log(`published ${results.filter((r) => r.ok).length}`);
      await new Promise(() => {}); // killed here: published, never marked
    }
    return results;
  },
};
const relay = createRelay({
  outbox: postgresOutbox({ pool, schema: cfg.schema, table: cfg.table }),
  publisher,
  lease: cfg.lease,
  poll: 50,
  signals: ['SIGTERM'],
});
await relay.start();
console.log('ready');
process.once('SIGTERM', async () => {
  // the relay's own SIGTERM handler drains it; wait for that, then let the process end
  while (relay.running) await new Promise((r) => setTimeout(r, 10));
  console.log('stopped');
  await close();
  await pool.end();
});

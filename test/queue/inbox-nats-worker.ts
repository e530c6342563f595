/**
 * A JetStream consumer process for the inbox tests: `idempotentHandler` over a Redis store,
 * each run appending a row to a Postgres ledger; freezes once the outcome is recorded, before
 * the ackAck, so the test can SIGKILL it there.
 *
 * argv[2]: JSON { nats, stream, durable, redis, prefix, pg, schema }
 */
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createIdem } from 'idem';
import { idempotentHandler } from 'idem/nats';
import { redisStore } from 'idem/redis';
import pg from 'pg';

const cfg = JSON.parse(process.argv[2]!) as {
  nats: string;
  stream: string;
  durable: string;
  redis: string;
  prefix: string;
  pg: string;
  schema: string;
};
const block = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
const pool = new pg.Pool({ connectionString: cfg.pg, max: 2 });
const idem = createIdem({ store: redisStore({ url: cfg.redis, prefix: cfg.prefix }) });
const nc = await connect({ servers: cfg.nats });
const handle = idempotentHandler(
  idem,
  {
    consumer: cfg.durable,
    onResult: (r, msg) => {
      process.stdout.write(`${r.status} ${msg.headers?.get('Nats-Msg-Id')}\n`);
      if (r.status === 'processed') block();
    },
  },
  async (msg, ctx) => {
    await pool.query(
      `INSERT INTO "${cfg.schema}".ledger (message_id, consumer, pid, may_have_run, downstream_key) VALUES ($1, 'nats', $2, $3, $4)`,
      [ctx.messageId, process.pid, ctx.mayHaveRun, ctx.downstreamKey],
    );
    return { by: process.pid, seq: msg.seq };
  },
);
const messages = await (await jetstream(nc).consumers.get(cfg.stream, cfg.durable)).consume();
process.stdout.write('ready\n');
for await (const m of messages) await handle(m);

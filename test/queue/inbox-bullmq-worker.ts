/**
 * A BullMQ worker process for the inbox tests: `idempotentProcessor` over a Redis store, each
 * run appending a row to a Postgres ledger. Modes: `die-after-record` (freezes once the outcome
 * is recorded, before BullMQ completes the job) and `die-mid-handler` (freezes after the effect).
 * Short lock and stall intervals, so a frozen worker's job is found stalled quickly.
 *
 * argv[2]: JSON { redis, prefix, queue, pg, schema, mode, leaseMs }
 */

import { Worker } from 'bullmq';
import { createIdem } from 'idem';
import { idempotentProcessor } from 'idem/bullmq';
import { redisStore } from 'idem/redis';
import pg from 'pg';

const cfg = JSON.parse(process.argv[2]!) as {
  redis: string;
  prefix: string;
  queue: string;
  pg: string;
  schema: string;
  mode: 'die-after-record' | 'die-mid-handler';
  leaseMs: number;
};
const block = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
const pool = new pg.Pool({ connectionString: cfg.pg, max: 2 });
const idem = createIdem({ store: redisStore({ url: cfg.redis, prefix: cfg.prefix }), lease: cfg.leaseMs });
const worker = new Worker(
  cfg.queue,
  idempotentProcessor(
    idem,
    {
      consumer: 'kill',
      onResult: (r, job) => {
        process.stdout.write(`${r.status} ${job.id}\n`);
        if (cfg.mode === 'die-after-record' && r.status === 'processed') block();
      },
    },
    async (job, ctx) => {
      await pool.query(
        `INSERT INTO "${cfg.schema}".ledger (message_id, consumer, pid, may_have_run, downstream_key) VALUES ($1, 'bullmq', $2, $3, $4)`,
        [job.id, process.pid, ctx.mayHaveRun, ctx.downstreamKey],
      );
      if (cfg.mode === 'die-mid-handler') {
        process.stdout.write(`effect ${job.id}\n`);
        block();
      }
      return { by: process.pid };
    },
  ),
  {
    connection: { url: cfg.redis, maxRetriesPerRequest: null },
    prefix: `${cfg.prefix}_q`,
    lockDuration: 1000,
    stalledInterval: 500,
    maxStalledCount: 10,
  },
);
worker.on('error', () => {});
await worker.waitUntilReady();
process.stdout.write('ready\n');

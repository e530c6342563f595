/**
 * `idem/bullmq` on a real Redis: a failing job retried through the inbox (DelayedError) and then
 * processed once; duplicate jobs carrying one event id processed once; fan-out (two consumers,
 * two queues) each once; a poison job parked in BullMQ's failed set after N runs with its error.
 */

import { type Job, Queue, Worker } from 'bullmq';
import { createIdem } from 'idem';
import { idempotentProcessor } from 'idem/bullmq';
import { redisStore } from 'idem/redis';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix, until } from '../stores/fixtures/redis-suite.ts';
import { createLedger, dropLedger, startChild } from './inbox-fixtures.ts';

const up = await serviceAvailable('redis');
const pgUp = up && (await serviceAvailable('postgres'));

describe.skipIf(!up)('idem/bullmq', () => {
  const prefix = uniqueName('idem_bq');
  const admin = up ? new Redis(SERVICES.redis) : (undefined as never);
  const connection = { url: SERVICES.redis, maxRetriesPerRequest: null };
  const idem = up
    ? createIdem({ store: redisStore({ url: SERVICES.redis, prefix }), lease: '5s' })
    : (undefined as never);
  const closers: Array<() => Promise<unknown>> = [];
  const ledgerSchema = `${prefix}_ledger`;
  let ledger: Awaited<ReturnType<typeof createLedger>>;
  beforeAll(async () => {
    if (pgUp) ledger = await createLedger(ledgerSchema);
  });
  afterAll(async () => {
    if (ledger) await dropLedger(ledger, ledgerSchema);
    for (const close of closers.reverse()) await close().catch(() => {});
    await idem?.close();
    await deletePrefix(admin, prefix);
    await deletePrefix(admin, `${prefix}_q`);
    admin?.disconnect();
  });
  const queue = (name: string) => {
    const q = new Queue(name, { connection, prefix: `${prefix}_q` });
    closers.push(() => q.obliterate({ force: true }).then(() => q.close()));
    return q;
  };
  const worker = <D, R>(name: string, processor: (job: Job<D, R>, token?: string) => Promise<R>) => {
    const w = new Worker<D, R>(name, processor, { connection, prefix: `${prefix}_q`, concurrency: 4 });
    w.on('error', () => {});
    closers.push(() => w.close(true));
    return w;
  };

  it('a failed run is retried by the inbox; duplicate jobs with one event id run once', async () => {
    const q = queue('pay');
    const effects: string[] = [];
    let failures = 0;
    worker(
      'pay',
      idempotentProcessor<{ eventId: string }>(
        idem,
        { consumer: 'payments', messageId: (job) => job.data.eventId, retryDelay: () => 50 },
        async (job, ctx) => {
          if (job.data.eventId === 'e1' && failures++ === 0) throw new Error('transient');
          effects.push(`${job.data.eventId}@${ctx.attempt}`);
          return `paid ${job.data.eventId}`;
        },
      ),
    );
    const jobs = await q.addBulk([
      { name: 'p', data: { eventId: 'e1' } },
      { name: 'p', data: { eventId: 'e2' } },
      { name: 'p', data: { eventId: 'e2' } }, // the producer published twice
    ]);
    expect(await until(async () => (await q.getCompletedCount()) === 3, 15_000)).toBe(true);
    expect(effects.sort()).toEqual(['e1@2', 'e2@1']);
    const values = await Promise.all(jobs.map(async (j) => (await q.getJob(j.id!))?.returnvalue));
    expect(values).toEqual(['paid e1', 'paid e2', 'paid e2']); // the duplicate got the recorded value
  });

  it('fan-out: two consumers of one event each run once', async () => {
    const runs: string[] = [];
    for (const consumer of ['billing', 'audit']) {
      const name = `fan_${consumer}`;
      const q = queue(name);
      worker(
        name,
        idempotentProcessor<{ eventId: string }>(
          idem,
          { consumer, messageId: (j) => j.data.eventId },
          async () => {
            runs.push(consumer);
          },
        ),
      );
      await q.add('e', { eventId: 'shared-1' });
      await q.add('e', { eventId: 'shared-1' });
    }
    await until(() => runs.length >= 2, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(runs.sort()).toEqual(['audit', 'billing']);
  });

  it('a poison job is parked in the failed set after maxAttempts runs, with its error', async () => {
    const q = queue('poison');
    let runs = 0;
    worker(
      'poison',
      idempotentProcessor(idem, { consumer: 'poison', maxAttempts: 3, retryDelay: () => 20 }, async () => {
        runs++;
        throw new Error('cannot parse');
      }),
    );
    const job = await q.add('x', { n: 1 }, { jobId: 'poison-1' });
    expect(await until(async () => (await q.getFailedCount()) === 1, 15_000)).toBe(true);
    const failed = await q.getJob(job.id!);
    expect(failed?.failedReason).toMatch(/parked after 3 attempts: Error: cannot parse/);
    expect(runs).toBe(3);
    // the parked state is recorded: the same message again is not run
    const again = await idem.consumeOnce({ consumer: 'poison', messageId: 'poison-1' }, async () => runs++);
    expect(again).toMatchObject({ status: 'parked', duplicate: true, attempts: 3 });
    expect(runs).toBe(3);
  });

  it('a job consumeOnce refuses (an outcome over maxOutcomeBytes) fails at once, without retries', async () => {
    const q = queue('refused');
    const small = createIdem({ store: redisStore({ url: SERVICES.redis, prefix }), maxOutcomeBytes: 16 });
    closers.push(() => small.close());
    worker(
      'refused',
      idempotentProcessor(small, { consumer: 'refused' }, async () => 'x'.repeat(100)),
    );
    const job = await q.add('x', {}, { attempts: 5 });
    expect(await until(async () => (await q.getFailedCount()) === 1, 10_000)).toBe(true);
    const failed = await q.getJob(job.id!);
    expect(failed?.failedReason).toMatch(/refused: OutcomeTooLargeError/);
    expect(failed?.attemptsMade).toBe(1);
  });

  it('bad options are refused when the processor is built', () => {
    expect(() =>
      idempotentProcessor(idem, { consumer: 'c', retryDelai: () => 1 } as never, async () => 1),
    ).toThrow(/unknown option retryDelai — did you mean retryDelay\?/);
    expect(() => idempotentProcessor(idem, { consumer: '' }, async () => 1)).toThrow(/consumer must be/);
    expect(() =>
      idempotentProcessor(idem, { consumer: 'c', lease: '30 parsecs' as never }, async () => 1),
    ).toThrow(/lease/);
  });

  const killWorker = (queueName: string, mode: string) => {
    const c = startChild(new URL('./inbox-bullmq-worker.ts', import.meta.url), {
      redis: SERVICES.redis,
      prefix,
      queue: queueName,
      pg: SERVICES.postgres,
      schema: ledgerSchema,
      mode,
      leaseMs: 1000,
    });
    closers.push(() => c.kill());
    return c;
  };
  /** A worker in this process with the child's short lock and stall intervals, answering { by: 'rescuer' }. */
  const rescuer = (name: string, onResult: (r: { status: string; value?: unknown }) => void) => {
    const w = new Worker(
      name,
      idempotentProcessor(idem, { consumer: 'kill', onResult }, async () => ({ by: 'rescuer' })),
      { connection, prefix: `${prefix}_q`, lockDuration: 1000, stalledInterval: 500, maxStalledCount: 10 },
    );
    w.on('error', () => {});
    closers.push(() => w.close(true));
    return w;
  };

  it.skipIf(!pgUp)(
    'a worker SIGKILLed after recording, before completing: the stalled job completes with the recorded value',
    async () => {
      const q = queue('kill1');
      const child = killWorker(q.name, 'die-after-record');
      await child.waitFor(/^ready$/);
      const job = await q.add('k', {}, { jobId: 'k1' });
      await child.waitFor(/^processed k1$/);
      await child.kill();
      const results: Array<{ status: string; value?: unknown }> = [];
      rescuer(q.name, (r) => results.push(r));
      expect(await until(async () => (await q.getCompletedCount()) === 1, 15_000)).toBe(true);
      expect(results).toEqual([
        expect.objectContaining({ status: 'duplicate', value: { by: child.child.pid } }),
      ]);
      expect((await q.getJob(job.id!))?.returnvalue).toEqual({ by: child.child.pid });
      const { rows } = await ledger.query(`SELECT * FROM "${ledgerSchema}".ledger WHERE message_id = 'k1'`);
      expect(rows).toHaveLength(1);
    },
    30_000,
  );

  it.skipIf(!pgUp)(
    'a worker SIGKILLed mid-handler: after the lease the job reruns with mayHaveRun and the same downstreamKey',
    async () => {
      const q = queue('kill2');
      const child = killWorker(q.name, 'die-mid-handler');
      await child.waitFor(/^ready$/);
      await q.add('k', {}, { jobId: 'k2' });
      await child.waitFor(/^effect k2$/);
      await child.kill();
      const results: string[] = [];
      const w = new Worker(
        q.name,
        idempotentProcessor(
          idem,
          { consumer: 'kill', retryDelay: () => 100, onResult: (r) => results.push(r.status) },
          async (job, ctx) => {
            await ledger.query(
              `INSERT INTO "${ledgerSchema}".ledger (message_id, consumer, pid, may_have_run, downstream_key) VALUES ($1, 'bullmq', $2, $3, $4)`,
              [job.id, process.pid, ctx.mayHaveRun, ctx.downstreamKey],
            );
          },
        ),
        { connection, prefix: `${prefix}_q`, lockDuration: 1000, stalledInterval: 500, maxStalledCount: 10 },
      );
      w.on('error', () => {});
      closers.push(() => w.close(true));
      expect(await until(async () => (await q.getCompletedCount()) === 1, 20_000)).toBe(true);
      expect(results.at(-1)).toBe('processed');
      const { rows } = await ledger.query(
        `SELECT * FROM "${ledgerSchema}".ledger WHERE message_id = 'k2' ORDER BY n`,
      );
      expect(rows.map((r) => r.may_have_run)).toEqual([false, true]);
      expect(new Set(rows.map((r) => r.downstream_key)).size).toBe(1);
    },
    30_000,
  );

  it('refuses a bad messageId option', () => {
    expect(() =>
      idempotentProcessor(idem, { consumer: 'c', messageId: 'id' as never }, async () => 1),
    ).toThrow(/messageId must be/);
  });
});

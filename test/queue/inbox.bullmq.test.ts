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
import { afterAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix, until } from '../stores/fixtures/redis-suite.ts';

const up = await serviceAvailable('redis');

describe.skipIf(!up)('idem/bullmq', () => {
  const prefix = uniqueName('idem_bq');
  const admin = up ? new Redis(SERVICES.redis) : (undefined as never);
  const connection = { url: SERVICES.redis, maxRetriesPerRequest: null };
  const idem = up
    ? createIdem({ store: redisStore({ url: SERVICES.redis, prefix }), lease: '5s' })
    : (undefined as never);
  const closers: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
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

  it('a job consumeOnce refuses (a bad option) fails at once, without retries', async () => {
    const q = queue('refused');
    worker(
      'refused',
      idempotentProcessor(idem, { consumer: 'refused', maxAttempts: 0 }, async () => 1),
    );
    const job = await q.add('x', {}, { attempts: 5 });
    expect(await until(async () => (await q.getFailedCount()) === 1, 10_000)).toBe(true);
    const failed = await q.getJob(job.id!);
    expect(failed?.failedReason).toMatch(/refused: InvalidOptionError: .*maxAttempts/);
    expect(failed?.attemptsMade).toBe(1);
  });

  it('refuses a bad messageId option', () => {
    expect(() =>
      idempotentProcessor(idem, { consumer: 'c', messageId: 'id' as never }, async () => 1),
    ).toThrow(/messageId must be/);
  });
});

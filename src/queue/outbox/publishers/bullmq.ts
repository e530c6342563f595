/**
 * BullMQ publisher: job id = event id, so a republished event is ignored while a job with that
 * id exists in the queue (until `removeOnComplete` / `removeOnFail` removes it).
 *
 * @module
 */
import { InvalidOptionError } from '../../../core/errors.ts';
import { checkOptions } from '../event.ts';
import type { OutboxEvent, Publisher, PublishResult } from '../types.ts';

/** The part of a BullMQ `Queue` the publisher uses. */
export interface BullQueueLike {
  add(name: string, data: unknown, opts?: { jobId?: string }): Promise<unknown>;
  addBulk(jobs: Array<{ name: string; data: unknown; opts?: { jobId?: string } }>): Promise<unknown>;
}

/** Options of {@link bullmqPublisher}. */
export interface BullmqPublisherOptions {
  /** One queue for every event, or the queue for an event's topic. */
  queue: BullQueueLike | ((topic: string) => BullQueueLike);
  /** The job name. Default: the event's topic. */
  jobName?: (event: OutboxEvent) => string;
  /** Extra job options (attempts, removeOnComplete…); jobId is always the event id. */
  jobOptions?: Record<string, unknown>;
}

/**
 * Publishes each event as a BullMQ job whose id is the event id; one `addBulk` per queue.
 *
 * @example
 * import { Queue } from 'bullmq';
 * const publisher = bullmqPublisher({ queue: new Queue('claims', { connection }) });
 */
export function bullmqPublisher(options: BullmqPublisherOptions): Publisher {
  checkOptions(options, ['queue', 'jobName', 'jobOptions'], 'bullmqPublisher');
  const { queue, jobName = (e: OutboxEvent) => e.topic, jobOptions = {} } = options;
  if (!queue || (typeof queue !== 'function' && typeof queue.addBulk !== 'function')) {
    throw new InvalidOptionError('bullmqPublisher: queue must be a BullMQ Queue or (topic) => Queue');
  }
  const queueOf = typeof queue === 'function' ? queue : () => queue;
  const job = (e: OutboxEvent) => ({
    name: jobName(e),
    data: e.payload,
    opts: { ...jobOptions, jobId: e.id },
  });
  return {
    name: 'bullmq',
    async publish(events): Promise<PublishResult[]> {
      const results: PublishResult[] = events.map((e) =>
        // BullMQ refuses ':' in custom ids: retrying cannot help
        e.id.includes(':')
          ? { ok: false, error: `BullMQ job ids cannot contain ':' (${e.id})`, park: true }
          : { ok: true },
      );
      const groups = new Map<BullQueueLike, number[]>();
      events.forEach((e, i) => {
        if (!results[i]!.ok) return;
        const q = queueOf(e.topic);
        const group = groups.get(q);
        if (group) group.push(i);
        else groups.set(q, [i]);
      });
      await Promise.all(
        [...groups].map(async ([q, indexes]) => {
          try {
            await q.addBulk(indexes.map((i) => job(events[i]!)));
          } catch {
            // find the culprit: one add each
            await Promise.all(
              indexes.map(async (i) => {
                const { name, data, opts } = job(events[i]!);
                try {
                  await q.add(name, data, opts);
                } catch (err) {
                  results[i] = { ok: false, error: (err as Error).message };
                }
              }),
            );
          }
        }),
      );
      return results;
    },
  };
}

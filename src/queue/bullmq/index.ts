/**
 * `idem/bullmq`: a BullMQ Worker processor that runs each job's handler once per consumer.
 *
 * | inbox answer | what the processor does |
 * |---|---|
 * | processed, duplicate | returns the (recorded) value: the job completes |
 * | retry | `job.moveToDelayed(now + retryAfterMs)` and throws `DelayedError` (no BullMQ attempt is used) |
 * | parked, rejected | throws an `UnrecoverableError`: the job goes to the failed set, with the error |
 *
 * @module
 */
import type { Job } from 'bullmq';
import { InvalidOptionError } from '../../core/errors.ts';
import type { ConsumeContext, ConsumeOptions, ConsumeResult } from '../../core/inbox.ts';
import { checkConsumeOptions } from '../../core/inbox.ts';
import type { Idem } from '../../core/types.ts';

/**
 * Options of {@link idempotentProcessor}.
 *
 * @example
 * const options: BullmqInboxOptions = { consumer: 'billing', messageId: (job) => job.data.eventId };
 */
export interface BullmqInboxOptions extends Omit<ConsumeOptions, 'redelivered'> {
  /** This consumer's name: each consumer processes a job once. */
  consumer: string;
  /**
   * The message id: `'jobId'` (default; set `jobId` when adding to dedupe producer retries too),
   * `'deduplicationId'` (`opts.deduplication.id`), or a function of the job (an id in its data).
   */
  messageId?: 'jobId' | 'deduplicationId' | ((job: Job) => string | undefined);
  /** Called with every inbox answer, for logs and metrics. */
  onResult?: (result: ConsumeResult<unknown>, job: Job) => void;
}

/**
 * Wraps a handler as a BullMQ processor: `new Worker(queue, idempotentProcessor(idem, opts, handler))`.
 *
 * @example
 * import { Worker } from 'bullmq';
 * import { idempotentProcessor } from 'idem/bullmq';
 * new Worker('payments', idempotentProcessor(idem, { consumer: 'payments' }, async (job, ctx) =>
 *   pay(job.data, { idempotencyKey: ctx.downstreamKey })), { connection });
 */
export function idempotentProcessor<D = unknown, R = unknown>(
  idem: Idem,
  options: BullmqInboxOptions,
  handler: (job: Job<D, R>, ctx: ConsumeContext) => R | Promise<R>,
): (job: Job<D, R>, token?: string) => Promise<R> {
  checkConsumeOptions(options, ['consumer', 'messageId', 'onResult'], 'idempotentProcessor');
  if (typeof options.consumer !== 'string' || options.consumer === '') {
    throw new InvalidOptionError(
      "idempotentProcessor: consumer must be a non-empty string (this consumer's name)",
    );
  }
  const { consumer, messageId = 'jobId', onResult, ...consume } = options ?? ({} as BullmqInboxOptions);
  if (typeof handler !== 'function')
    throw new InvalidOptionError('idempotentProcessor: handler must be a function');
  if (typeof messageId !== 'function' && messageId !== 'jobId' && messageId !== 'deduplicationId') {
    throw new InvalidOptionError(
      `idempotentProcessor: messageId must be 'jobId', 'deduplicationId' or a function, got ${String(messageId)}`,
    );
  }
  const idOf = (job: Job): string | undefined =>
    messageId === 'jobId'
      ? job.id
      : messageId === 'deduplicationId'
        ? job.opts.deduplication?.id
        : messageId(job);

  return async function idempotentJob(job, token) {
    const id = idOf(job as Job);
    if (typeof id !== 'string' || id === '')
      throw unrecoverable(`job ${job.id} has no message id (${String(messageId)})`);
    const redelivered =
      (job.attemptsStarted ?? 0) > 1 || job.attemptsMade > 0 || (job.stalledCounter ?? 0) > 0;
    let result: ConsumeResult<R>;
    try {
      result = await idem.consumeOnce({ consumer, messageId: id }, (ctx) => handler(job, ctx), {
        ...consume,
        redelivered,
      });
    } catch (error) {
      // refused (a bad option, an oversized outcome): retrying cannot help
      throw unrecoverable(`refused: ${(error as Error)?.name}: ${(error as Error)?.message}`);
    }
    onResult?.(result, job as Job);
    switch (result.status) {
      case 'processed':
      case 'duplicate':
        return result.value;
      case 'retry':
        if (token === undefined) throw result.error; // no lock token (sandboxed): BullMQ's own retries apply
        await job.moveToDelayed(Date.now() + result.retryAfterMs, token);
        throw named('DelayedError', `retry in ${result.retryAfterMs} ms (${result.reason})`);
      case 'parked':
        throw unrecoverable(
          `parked after ${result.attempts} attempts: ${result.error.name}: ${result.error.message}`,
        );
      default:
        throw unrecoverable(`rejected: ${String(result.error)}`);
    }
  };
}

/** BullMQ recognises its control errors by name as well as by class: no runtime import needed. */
function named(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

function unrecoverable(message: string): Error {
  return named('UnrecoverableError', message);
}

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
export interface BullmqInboxOptions extends ConsumeOptions {
  /** This consumer's name: each consumer processes a job once. */
  consumer: string;
  /**
   * The message id: `'jobId'` (default: the job id qualified with its queue, `bull:orders:17`;
   * set `jobId` when adding to dedupe producer retries too, since auto ids restart at 1 after
   * `obliterate`), `'deduplicationId'` (`opts.deduplication.id`), or a function of the job (an
   * id in its data, used as is).
   */
  messageId?: 'jobId' | 'deduplicationId' | ((job: Job) => string | undefined);
  /**
   * The payload fingerprinted against the message id (a job with the same id and another
   * payload is rejected): a value, or a function of the job, called per job.
   */
  input?: unknown | ((job: Job) => unknown);
  /** Called with every inbox answer, for logs and metrics. A throw is ignored (the job settles as answered). */
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
  if (onResult !== undefined && typeof onResult !== 'function')
    throw new InvalidOptionError(`idempotentProcessor: onResult must be a function, got ${typeof onResult}`);
  // Job ids are unique per queue only (and auto ids restart after obliterate): qualify them.
  const queueOf = (job: Job) => job.queueQualifiedName ?? job.queueName;
  const idOf = (job: Job): string | undefined =>
    messageId === 'jobId'
      ? job.id === undefined
        ? undefined
        : `${queueOf(job)}:${job.id}`
      : messageId === 'deduplicationId'
        ? job.opts.deduplication?.id === undefined
          ? undefined
          : `${queueOf(job)}:${job.opts.deduplication.id}`
        : messageId(job);
  const { input, ...rest } = consume as ConsumeOptions;

  return async function idempotentJob(job, token) {
    const id = idOf(job as Job);
    if (typeof id !== 'string' || id === '')
      throw unrecoverable(`job ${job.id} has no message id (${String(messageId)})`);
    let result: ConsumeResult<R>;
    try {
      result = await idem.consumeOnce({ consumer, messageId: id }, (ctx) => handler(job, ctx), {
        ...rest,
        ...(input === undefined ? {} : { input: typeof input === 'function' ? input(job) : input }),
      });
    } catch (error) {
      // refused (a bad option, an oversized outcome): retrying cannot help
      throw unrecoverable(`refused: ${(error as Error)?.name}: ${(error as Error)?.message}`);
    }
    try {
      onResult?.(result, job as Job);
    } catch {
      // a broken metrics hook must not turn a recorded outcome into a failed job
    }
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

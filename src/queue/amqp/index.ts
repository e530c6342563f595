/**
 * `idem/amqp`: an amqplib consumer that runs each message's handler once per consumer and
 * acks only after the outcome is recorded.
 *
 * | inbox answer | what the consumer does |
 * |---|---|
 * | processed, duplicate | `ack` (after the outcome is in the store) |
 * | retry (failed run, in progress elsewhere, store down) | `nack(requeue)` after `retryAfterMs` (capped by `maxRequeueDelay`) |
 * | parked, rejected, no message id | `nack` without requeue: the queue's dead-letter exchange gets it |
 *
 * If the channel closed before the ack (connection dropped), the broker redelivers; the
 * redelivery finds the recorded outcome and is acked without running the handler.
 *
 * @module
 */
import type { ConsumeMessage } from 'amqplib';
import { toMs } from '../../core/duration.ts';
import { InvalidKeyError, InvalidOptionError } from '../../core/errors.ts';
import type { ConsumeContext, ConsumeOptions, ConsumeResult } from '../../core/inbox.ts';
import { checkConsumeOptions } from '../../core/inbox.ts';
import type { Idem } from '../../core/types.ts';

/**
 * The channel methods the consumer uses (an amqplib `Channel` or `ConfirmChannel`).
 *
 * @example
 * const channel: AmqpChannelLike = await connection.createChannel();
 */
export interface AmqpChannelLike {
  ack(message: ConsumeMessage): void;
  nack(message: ConsumeMessage, allUpTo?: boolean, requeue?: boolean): void;
}

/**
 * Options of {@link idempotentConsumer}.
 *
 * @example
 * const options: AmqpInboxOptions = { consumer: 'billing', messageId: { header: 'event-id' }, maxAttempts: 3 };
 */
export interface AmqpInboxOptions extends ConsumeOptions {
  /** This consumer's name: each consumer (queue bound to a fan-out exchange) processes a message once. */
  consumer: string;
  /**
   * The message id: the `messageId` property (default), a header name, or a function of the
   * message. A message without one cannot be deduplicated and is dead-lettered.
   */
  messageId?: { header: string } | ((msg: ConsumeMessage) => string | undefined);
  /** The longest a retry waits before `nack(requeue)`, holding the message unacked. Default `'2s'`. */
  maxRequeueDelay?: number | `${number}${'ms' | 's' | 'm'}`;
  /**
   * The payload fingerprinted against the message id (a redelivery with another payload is
   * rejected): a value, or a function of the message, called per message.
   */
  input?: unknown | ((msg: ConsumeMessage) => unknown);
  /** Called with every inbox answer (and the message), for logs and metrics. A throw goes to `onError`. */
  onResult?: (result: ConsumeResult<unknown> | { status: 'no_message_id' }, msg: ConsumeMessage) => void;
  /**
   * Called when settling fails (the channel closed: the broker will redeliver), and with the
   * error when `consumeOnce` refused the message (it is dead-lettered).
   */
  onError?: (error: unknown, msg: ConsumeMessage) => void;
}

/**
 * Builds the `onMessage` callback for `channel.consume(queue, onMessage)` (manual ack).
 *
 * @example
 * import { idempotentConsumer } from 'idem/amqp';
 * await channel.consume('payments', idempotentConsumer(idem, channel, { consumer: 'payments' },
 *   async (msg, ctx) => pay(JSON.parse(msg.content.toString()), ctx.downstreamKey)));
 */
export function idempotentConsumer<R = unknown>(
  idem: Idem,
  channel: AmqpChannelLike,
  options: AmqpInboxOptions,
  handler: (msg: ConsumeMessage, ctx: ConsumeContext) => R | Promise<R>,
): (msg: ConsumeMessage | null) => Promise<ConsumeResult<R> | undefined> {
  checkConsumeOptions(
    options,
    ['consumer', 'messageId', 'maxRequeueDelay', 'onResult', 'onError'],
    'idempotentConsumer',
  );
  if (typeof options.consumer !== 'string' || options.consumer === '') {
    throw new InvalidOptionError(
      "idempotentConsumer: consumer must be a non-empty string (this consumer's name)",
    );
  }
  const {
    consumer,
    messageId,
    maxRequeueDelay = '2s',
    onResult,
    onError,
    ...consume
  } = options ?? ({} as AmqpInboxOptions);
  if (typeof handler !== 'function')
    throw new InvalidOptionError('idempotentConsumer: handler must be a function');
  if (typeof channel?.ack !== 'function' || typeof channel.nack !== 'function') {
    throw new InvalidOptionError('idempotentConsumer needs an amqplib channel');
  }
  const header = typeof messageId === 'object' && messageId !== null ? messageId.header : undefined;
  if (messageId !== undefined && typeof messageId !== 'function' && typeof header !== 'string') {
    throw new InvalidOptionError('idempotentConsumer: messageId must be { header } or a function');
  }
  for (const [name, hook] of [
    ['onResult', onResult],
    ['onError', onError],
  ] as const) {
    if (hook !== undefined && typeof hook !== 'function')
      throw new InvalidOptionError(`idempotentConsumer: ${name} must be a function, got ${typeof hook}`);
  }
  const maxDelayMs = toMs(maxRequeueDelay, 'maxRequeueDelay');
  const idOf = (msg: ConsumeMessage): unknown => {
    const id =
      typeof messageId === 'function'
        ? messageId(msg)
        : header !== undefined
          ? msg.properties.headers?.[header]
          : msg.properties.messageId;
    // headers carry numbers and byte strings as well: use their text
    if ((typeof id === 'number' && Number.isFinite(id)) || typeof id === 'bigint') return String(id);
    if (Buffer.isBuffer(id)) return id.toString('utf8');
    return id;
  };
  // The hooks must never keep a message from being settled, nor crash the consumer.
  const report = (error: unknown, msg: ConsumeMessage) => {
    try {
      onError?.(error, msg);
    } catch {
      // a throwing onError has nowhere left to report to
    }
  };
  const tell = (result: ConsumeResult<unknown> | { status: 'no_message_id' }, msg: ConsumeMessage) => {
    try {
      onResult?.(result, msg);
    } catch (error) {
      report(error, msg);
    }
  };
  const settle = (msg: ConsumeMessage, how: () => void) => {
    try {
      how();
    } catch (error) {
      report(error, msg); // the channel is gone: the broker redelivers the message
    }
  };
  const { input, ...rest } = consume as ConsumeOptions;

  return async function onMessage(msg) {
    if (msg === null) return undefined; // the broker cancelled the consumer
    let id: unknown;
    try {
      id = idOf(msg);
    } catch (error) {
      id = undefined;
      report(error, msg);
    }
    if (typeof id !== 'string' || id === '') {
      tell({ status: 'no_message_id' }, msg);
      settle(msg, () => channel.nack(msg, false, false));
      report(
        new InvalidKeyError(
          `idempotentConsumer: the message has no usable id (${typeof id}): dead-lettered, it cannot be deduplicated`,
        ),
        msg,
      );
      return undefined;
    }
    let result: ConsumeResult<R>;
    try {
      result = await idem.consumeOnce({ consumer, messageId: id }, (ctx) => handler(msg, ctx), {
        ...rest,
        ...(input === undefined ? {} : { input: typeof input === 'function' ? input(msg) : input }),
      });
    } catch (error) {
      // a programming error (bad option, oversized outcome): never loop on it, and never throw
      // from a consume callback (amqplib does not await it: that would be an unhandled rejection)
      settle(msg, () => channel.nack(msg, false, false));
      report(error, msg);
      return undefined;
    }
    tell(result, msg);
    if (result.next === 'ack') settle(msg, () => channel.ack(msg));
    else if (result.next === 'dead_letter') settle(msg, () => channel.nack(msg, false, false));
    else {
      const delay = Math.min(result.retryAfterMs, maxDelayMs);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      settle(msg, () => channel.nack(msg, false, true));
    }
    return result;
  };
}

/**
 * `idem/nats`: a JetStream message handler that runs each message's handler once per
 * consumer, heartbeats with `working()` while it runs, and `ackAck`s only after the outcome is
 * recorded.
 *
 * | inbox answer | what the handler does |
 * |---|---|
 * | processed, duplicate | `ackAck()` (after the outcome is in the store) |
 * | retry (failed run, in progress elsewhere, store down) | `nak(retryAfterMs)` |
 * | parked, rejected | `term()`: the server stops redelivering (and emits a MSG_TERMINATED advisory); the error is in the store |
 *
 * The message id is the `Nats-Msg-Id` header (the publisher's dedup id), else the stream,
 * sequence and the message's stored timestamp (which dedupes redeliveries, not a producer's
 * second publish; the timestamp keeps a recreated stream, whose sequences restart at 1, from
 * matching the old stream's records).
 *
 * @module
 */
import type { JsMsg } from '@nats-io/jetstream';
import { toMs } from '../../core/duration.ts';
import { InvalidKeyError, InvalidOptionError } from '../../core/errors.ts';
import type { ConsumeContext, ConsumeOptions, ConsumeResult } from '../../core/inbox.ts';
import { checkConsumeOptions } from '../../core/inbox.ts';
import type { Idem } from '../../core/types.ts';

/**
 * Options of {@link idempotentHandler}.
 *
 * @example
 * const options: NatsInboxOptions = { consumer: 'billing', workingEvery: '5s', maxAttempts: 3 };
 */
export interface NatsInboxOptions extends ConsumeOptions {
  /** This consumer's name (usually the durable consumer's): each consumer processes a message once. */
  consumer: string;
  /** The message id: `Nats-Msg-Id` (default), another header, or a function of the message. */
  messageId?: { header: string } | ((msg: JsMsg) => string | undefined);
  /** How often `working()` extends the ack wait while the handler runs. Default `'5s'`; keep it under the consumer's `ack_wait`. */
  workingEvery?: number | `${number}${'ms' | 's' | 'm'}`;
  /**
   * The payload fingerprinted against the message id (a redelivery with another payload is
   * rejected): a value, or a function of the message, called per message.
   */
  input?: unknown | ((msg: JsMsg) => unknown);
  /** Called with every inbox answer, for logs and metrics. A throw goes to `onError`. */
  onResult?: (result: ConsumeResult<unknown>, msg: JsMsg) => void;
  /**
   * Called when the ack was not confirmed (the server will redeliver; the redelivery is a
   * duplicate), and with the error when a message was refused (no id, a bad option): it is terminated.
   */
  onError?: (error: unknown, msg: JsMsg) => void;
}

/**
 * Builds a handler for JetStream messages: `for await (const m of await consumer.consume()) await handle(m)`.
 *
 * @example
 * import { idempotentHandler } from 'idem/nats';
 * const handle = idempotentHandler(idem, { consumer: 'payments' }, async (msg, ctx) =>
 *   pay(msg.json(), { idempotencyKey: ctx.downstreamKey }));
 * for await (const m of await js.consumers.get('ORDERS', 'payments').then((c) => c.consume())) await handle(m);
 */
export function idempotentHandler<R = unknown>(
  idem: Idem,
  options: NatsInboxOptions,
  handler: (msg: JsMsg, ctx: ConsumeContext) => R | Promise<R>,
): (msg: JsMsg) => Promise<ConsumeResult<R> | undefined> {
  checkConsumeOptions(
    options,
    ['consumer', 'messageId', 'workingEvery', 'onResult', 'onError'],
    'idempotentHandler',
  );
  if (typeof options.consumer !== 'string' || options.consumer === '') {
    throw new InvalidOptionError(
      "idempotentHandler: consumer must be a non-empty string (this consumer's name)",
    );
  }
  const {
    consumer,
    messageId,
    workingEvery = '5s',
    onResult,
    onError,
    ...consume
  } = options ?? ({} as NatsInboxOptions);
  if (typeof handler !== 'function')
    throw new InvalidOptionError('idempotentHandler: handler must be a function');
  const header = typeof messageId === 'object' && messageId !== null ? messageId.header : 'Nats-Msg-Id';
  if (messageId !== undefined && typeof messageId !== 'function' && typeof header !== 'string') {
    throw new InvalidOptionError('idempotentHandler: messageId must be { header } or a function');
  }
  for (const [name, hook] of [
    ['onResult', onResult],
    ['onError', onError],
  ] as const) {
    if (hook !== undefined && typeof hook !== 'function')
      throw new InvalidOptionError(`idempotentHandler: ${name} must be a function, got ${typeof hook}`);
  }
  const everyMs = toMs(workingEvery, 'workingEvery');
  if (everyMs < 100) throw new InvalidOptionError('idempotentHandler: workingEvery must be at least 100 ms');
  const idOf = (msg: JsMsg): string | undefined => {
    if (typeof messageId === 'function') return messageId(msg);
    const h = msg.headers?.get(header);
    if (h) return h;
    return messageId === undefined ? fallbackId(msg) : undefined;
  };
  const report = (error: unknown, msg: JsMsg) => {
    try {
      onError?.(error, msg);
    } catch {
      // a throwing onError has nowhere left to report to
    }
  };
  const { input, ...rest } = consume as ConsumeOptions;

  return async function handle(msg) {
    let id: string | undefined;
    try {
      id = idOf(msg);
    } catch (error) {
      report(error, msg);
    }
    if (typeof id !== 'string' || id === '') {
      msg.term();
      report(new InvalidKeyError(`idempotentHandler: message ${msg.seq} has no message id`), msg);
      return undefined;
    }
    const beat = setInterval(() => msg.working(), everyMs);
    let result: ConsumeResult<R>;
    try {
      result = await idem.consumeOnce({ consumer, messageId: id }, (ctx) => handler(msg, ctx), {
        ...rest,
        ...(input === undefined ? {} : { input: typeof input === 'function' ? input(msg) : input }),
      });
    } catch (error) {
      msg.term(); // a programming error (bad option, oversized outcome): never loop on it
      report(error, msg);
      return undefined;
    } finally {
      clearInterval(beat);
    }
    try {
      onResult?.(result, msg);
    } catch (error) {
      report(error, msg); // a broken hook must not keep the message from being settled
    }
    if (result.next === 'ack') {
      try {
        await msg.ackAck();
      } catch (error) {
        report(error, msg);
      }
    } else if (result.next === 'retry') msg.nak(result.retryAfterMs);
    // no reason string: servers before 2.10 ignore a +TERM that carries one; the store has the error
    else msg.term();
    return result;
  };
}

/**
 * The id of a message without `Nats-Msg-Id`: stream, sequence and the message's stored
 * timestamp in nanoseconds. The same on every redelivery; a recreated stream restarts its
 * sequences, but not its timestamps.
 *
 * @example
 * fallbackId(msg) // 'ORDERS:17:1764560000123456789'
 */
export function fallbackId(msg: JsMsg): string {
  const nanos = (msg as { timestampNanos?: bigint }).timestampNanos ?? msg.info.timestampNanos;
  return `${msg.info.stream}:${msg.seq}:${String(nanos)}`;
}

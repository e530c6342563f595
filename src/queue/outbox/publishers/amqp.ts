/**
 * RabbitMQ publisher (amqplib) on a confirm channel: `messageId` = event id, persistent
 * messages, and an event counts as published only when the broker confirms it. RabbitMQ
 * itself does not dedupe: a republished event arrives twice and the consumer's inbox (keyed
 * by `messageId`) drops the second.
 *
 * @module
 */
import { InvalidOptionError } from '../../../core/errors.ts';
import { checkOptions } from '../event.ts';
import type { OutboxEvent, Publisher, PublishResult } from '../types.ts';

/** The part of amqplib's `ConfirmChannel` the publisher uses. */
export interface ConfirmChannelLike {
  publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Record<string, unknown>,
    callback: (err: unknown) => void,
  ): boolean;
  once(event: 'close' | 'error' | 'drain', listener: (...args: unknown[]) => void): unknown;
  on(event: 'return', listener: (...args: unknown[]) => void): unknown;
  removeListener(event: 'close' | 'return', listener: (...args: unknown[]) => void): unknown;
}

/** Options of {@link amqpPublisher}. */
export interface AmqpPublisherOptions {
  /** A confirm channel (`conn.createConfirmChannel()`), or a function opening one, called again after it closes. */
  channel: ConfirmChannelLike | (() => Promise<ConfirmChannelLike>);
  /** Exchange. Default `''` (the default exchange: the routing key is the queue name). */
  exchange?: string;
  /** Routing key for an event. Default: its topic. */
  routingKey?: (event: OutboxEvent) => string;
  /**
   * Publish as `mandatory`: a message no queue is bound for comes back and fails (retried, then
   * parked) instead of being confirmed and dropped. Default true.
   */
  mandatory?: boolean;
}

/**
 * Publishes to RabbitMQ with publisher confirms.
 *
 * @example
 * import amqp from 'amqplib';
 * const conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672');
 * const publisher = amqpPublisher({ channel: () => conn.createConfirmChannel() });
 */
export function amqpPublisher(options: AmqpPublisherOptions): Publisher {
  checkOptions(options, ['channel', 'exchange', 'routingKey', 'mandatory'], 'amqpPublisher');
  const { channel, exchange = '', routingKey = (e: OutboxEvent) => e.topic, mandatory = true } = options;
  if (!channel || (typeof channel !== 'function' && typeof channel.publish !== 'function')) {
    throw new InvalidOptionError(
      'amqpPublisher: channel must be a ConfirmChannel or () => Promise<ConfirmChannel>',
    );
  }
  let current: Promise<ConfirmChannelLike> | undefined;
  const open = (): Promise<ConfirmChannelLike> => {
    if (typeof channel !== 'function') return Promise.resolve(channel);
    if (!current) {
      const opening = channel().then((ch) => {
        const forget = () => {
          if (current === opening) current = undefined;
        };
        ch.once('close', forget);
        ch.once('error', forget);
        return ch;
      });
      opening.catch(() => {
        if (current === opening) current = undefined;
      });
      current = opening;
    }
    return current;
  };
  return {
    name: 'amqp',
    async publish(events, signal): Promise<PublishResult[]> {
      const ch = await open();
      const confirms: Promise<PublishResult>[] = [];
      let closed: unknown;
      const onClose = (err?: unknown) => {
        closed = err ?? new Error('channel closed');
      };
      ch.once('close', onClose);
      // RabbitMQ sends basic.return before the confirm of an unroutable mandatory message
      const returned = new Set<string>();
      const onReturn = (...args: unknown[]) => {
        const msg = args[0] as { properties?: { messageId?: unknown } } | undefined;
        returned.add(String(msg?.properties?.messageId));
      };
      ch.on('return', onReturn);
      try {
        for (const e of events) {
          if (closed || signal.aborted) {
            const why = (closed as Error)?.message ?? 'aborted';
            confirms.push(Promise.resolve({ ok: false, error: `not sent: ${why}` }));
            continue;
          }
          let more = true;
          confirms.push(
            new Promise<PublishResult>((resolve) => {
              const settle = (err: unknown) =>
                resolve(err ? { ok: false, error: String((err as Error)?.message ?? err) } : { ok: true });
              signal.addEventListener('abort', () => settle(signal.reason ?? new Error('aborted')), {
                once: true,
              });
              try {
                more = ch.publish(
                  exchange,
                  routingKey(e),
                  Buffer.from(JSON.stringify(e.payload)),
                  properties(e, mandatory),
                  settle,
                );
              } catch (err) {
                settle(err);
              }
            }),
          );
          if (!more) await new Promise<void>((r) => ch.once('drain', () => r()));
        }
        const results = await Promise.all(confirms);
        return results.map((r, i) =>
          r.ok && returned.has(events[i]!.id)
            ? {
                ok: false,
                error: `unroutable: no queue for '${routingKey(events[i]!)}' on exchange '${exchange}'`,
              }
            : r,
        );
      } finally {
        ch.removeListener('close', onClose);
        ch.removeListener('return', onReturn);
        // a closed channel, or one that did not confirm in time (a silently dead socket), is not reused
        if (closed || signal.aborted) current = undefined;
      }
    },
  };
}

function properties(e: OutboxEvent, mandatory: boolean) {
  return {
    mandatory,
    messageId: e.id,
    persistent: true,
    contentType: 'application/json',
    timestamp: Math.floor(e.createdAt / 1000),
    headers: e.headers,
    type: e.topic,
  };
}

/**
 * NATS JetStream publisher: `Nats-Msg-Id` = event id, so the stream drops a republished event
 * within its `duplicate_window` (default 2 min). The whole batch is published at once and the
 * acks are awaited together.
 *
 * @module
 */
import { InvalidOptionError } from '../../../core/errors.ts';
import { checkOptions } from '../event.ts';
import type { OutboxEvent, Publisher, PublishResult } from '../types.ts';

/** Headers as `@nats-io/*`'s `headers()` makes them. */
export interface NatsHeadersLike {
  set(key: string, value: string): void;
}

/** The part of a JetStream client (`jetstream(nc)`) the publisher uses. */
export interface JetStreamLike {
  publish(
    subject: string,
    payload?: Uint8Array | string,
    options?: { msgID?: string; timeout?: number; headers?: never },
  ): Promise<{ duplicate: boolean; seq: number }>;
}

/** Options of {@link natsPublisher}. */
export interface NatsPublisherOptions {
  /** `jetstream(nc)` from `@nats-io/jetstream`. */
  js: JetStreamLike;
  /** The subject for an event. Default: its topic. */
  subject?: (event: OutboxEvent) => string;
  /** `headers` from `@nats-io/transport-node`: pass it to forward the events' headers. */
  headers?: () => NatsHeadersLike;
  /** Ack timeout per message, ms. Default 5000. */
  timeout?: number;
}

const encoder = new TextEncoder();

/**
 * Publishes to JetStream with the event id as `Nats-Msg-Id`.
 *
 * @example
 * import { connect, headers } from '@nats-io/transport-node';
 * import { jetstream } from '@nats-io/jetstream';
 * const js = jetstream(await connect({ servers: 'nats://127.0.0.1:4222' }));
 * const publisher = natsPublisher({ js, headers });
 */
export function natsPublisher(options: NatsPublisherOptions): Publisher {
  checkOptions(options, ['js', 'subject', 'headers', 'timeout'], 'natsPublisher');
  const { js, subject = (e: OutboxEvent) => e.topic, headers, timeout = 5000 } = options;
  if (!js || typeof js.publish !== 'function')
    throw new InvalidOptionError('natsPublisher: js must be jetstream(nc)');
  return {
    name: 'nats',
    async publish(events): Promise<PublishResult[]> {
      const settled = await Promise.allSettled(
        events.map((e) => {
          let h: NatsHeadersLike | undefined;
          const entries = Object.entries(e.headers);
          if (headers && entries.length > 0) {
            h = headers();
            for (const [k, v] of entries) h.set(k, v);
          }
          const opts = { msgID: e.id, timeout, ...(h ? { headers: h as never } : {}) };
          return js.publish(subject(e), encoder.encode(JSON.stringify(e.payload)), opts);
        }),
      );
      return settled.map((s) =>
        s.status === 'fulfilled'
          ? { ok: true }
          : { ok: false, error: String((s.reason as Error)?.message ?? s.reason) },
      );
    },
  };
}

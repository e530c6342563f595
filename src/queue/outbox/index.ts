/**
 * `idem/outbox`: write events in the same transaction as your state change, and let a relay
 * publish them, with the event id as the broker's dedup id.
 *
 * @example
 * import { createRelay, natsPublisher, postgresOutbox } from 'idem/outbox';
 * const outbox = postgresOutbox({ pool });
 * await outbox.migrate();
 * // in your transaction:
 * await outbox.add(client, { topic: 'claims.approved', key: claimId, payload: { claimId } });
 * // in the relay process:
 * await createRelay({ outbox, publisher: natsPublisher({ js }), signals: ['SIGTERM'] }).start();
 *
 * @module
 */
export { uuidv7 } from './event.ts';
export {
  type PgPoolLike,
  type PgQueryable,
  type PostgresOutbox,
  type PostgresOutboxOptions,
  postgresOutbox,
} from './postgres.ts';
export { type AmqpPublisherOptions, amqpPublisher, type ConfirmChannelLike } from './publishers/amqp.ts';
export { type BullmqPublisherOptions, type BullQueueLike, bullmqPublisher } from './publishers/bullmq.ts';
export { type JetStreamLike, type NatsPublisherOptions, natsPublisher } from './publishers/nats.ts';
export { type WebhookPublisherOptions, webhookPublisher } from './publishers/webhook.ts';
export { type BatchReport, createRelay, type Relay, type RelayOptions } from './relay.ts';
export {
  type SqliteDatabaseLike,
  type SqliteOutbox,
  type SqliteOutboxOptions,
  sqliteOutbox,
} from './sqlite.ts';
export type {
  FailedEvent,
  NewOutboxEvent,
  OutboxBackend,
  OutboxEvent,
  OutboxStats,
  ParkedEvent,
  Publisher,
  PublishResult,
} from './types.ts';

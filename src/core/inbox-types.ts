/**
 * The inbox's public types: which message (`MessageRef`), what the handler gets
 * (`ConsumeContext`), what a delivery gets (`ConsumeResult`, `next`), and the options.
 * `consumeOnce` itself is in inbox.ts.
 *
 * @module
 */
import type { Duration } from './duration.ts';
import type { SerializedError } from './outcome.ts';

/**
 * Which message, for which consumer. Fan-out consumers use their own `consumer` name.
 *
 * @example
 * const ref: MessageRef = { consumer: 'billing', messageId: msg.properties.messageId };
 */
export interface MessageRef {
  /** The consuming service or subscription: each consumer processes a message once. */
  consumer: string;
  /** The message's stable id (AMQP `messageId`, `Nats-Msg-Id`, BullMQ job id, an event id). */
  messageId: string;
}

/**
 * What the handler receives.
 *
 * @example
 * const handler = (ctx: ConsumeContext) => payments.post(order, { idempotencyKey: ctx.downstreamKey });
 */
export interface ConsumeContext {
  consumer: string;
  messageId: string;
  /** 1 + the failed (or crashed) runs of this message by this consumer, as counted in the store. */
  attempt: number;
  /** True when an earlier run died without recording an outcome: its effect may have happened. */
  mayHaveRun: boolean;
  /** Aborts when this run loses its lease (another worker took the message over). */
  signal: AbortSignal;
  /** Stable across runs and workers: pass it to external APIs that accept idempotency keys. */
  downstreamKey: string;
  /** The engine's record id of this message (hashed; never the raw ids). */
  recordId: string;
}

/**
 * The handler of one message.
 *
 * @example
 * const charge: ConsumeHandler<string> = async (ctx) => (await stripe.charge(order, ctx.downstreamKey)).id;
 */
export type ConsumeHandler<T> = (ctx: ConsumeContext) => T | Promise<T>;

/**
 * What the adapter should do with the delivery.
 *
 * @example
 * const settle: Record<ConsumeNext, () => void> = { ack: () => ch.ack(m), retry: () => ch.nack(m), dead_letter: () => ch.nack(m, false, false) };
 */
export type ConsumeNext = 'ack' | 'retry' | 'dead_letter';

/**
 * The answer of `consumeOnce`. `next` tells a broker adapter what to do: `ack` once the outcome
 * is recorded, `retry` (nack / requeue after `retryAfterMs`) when the key was released or is held
 * elsewhere, `dead_letter` when the message is parked.
 *
 * @example
 * const r: ConsumeResult<Receipt> = await idem.consumeOnce(ref, handler);
 * if (r.status === 'retry') setTimeout(requeue, r.retryAfterMs);
 */
export type ConsumeResult<T> =
  | { status: 'processed'; next: 'ack'; duplicate: false; value: T; attempt: number }
  | { status: 'duplicate'; next: 'ack'; duplicate: true; value: T; attempt: number }
  | {
      status: 'parked';
      next: 'dead_letter';
      /** True when an earlier delivery parked it; this delivery did not run the handler. */
      duplicate: boolean;
      error: SerializedError;
      attempts: number;
    }
  | {
      status: 'retry';
      next: 'retry';
      duplicate: false;
      reason: 'failed' | 'in_progress' | 'lease_lost' | 'store_unavailable';
      error: unknown;
      /** Failed runs counted so far (0 when the handler did not run here). */
      attempts: number;
      retryAfterMs: number;
    }
  | {
      status: 'rejected';
      next: 'dead_letter';
      duplicate: false;
      reason: 'fingerprint_mismatch';
      error: unknown;
    };

/**
 * Options of `consumeOnce`: the engine's per-call options plus the inbox's own.
 * `ttl` is the dedup window: keep it longer than the broker can redeliver or republish.
 *
 * @example
 * await idem.consumeOnce(ref, handler, { maxAttempts: 3, ttl: '7d', retryDelay: (n) => 1000 * n });
 */
export interface ConsumeOptions {
  /** The message payload: the same message id with another payload is `rejected`, never run. */
  input?: unknown;
  fingerprint?: string;
  exclude?: readonly string[];
  scope?: string | readonly string[];
  /** How long a processed (or parked) message is remembered: the dedup window. */
  ttl?: Duration;
  /** How long a run owns the message without renewing (renewed while the handler runs). */
  lease?: Duration;
  waitTimeout?: Duration;
  releaseGuard?: Duration;
  /** Errors for which this returns true park the message at once (no retry). */
  definitive?: (error: unknown) => boolean;
  /** Failed (or crashed) runs before the message is parked. Default 5. */
  maxAttempts?: number;
  /** Delay before a failed message is retried, by failed runs so far. Default 500 ms × 2^(n−1), at most 30 s. */
  retryDelay?: (failures: number) => number;
}

/**
 * The shapes the outbox, its relay and its publishers share.
 *
 * ```
 * app tx ─ outbox.add(tx, event) ─▶ row (pending) ─ commit ─▶ NOTIFY
 * relay ─ claim (lease, attempts+1) ─▶ publisher.publish(batch) ─▶ mark published
 *                                               └─ failed ─▶ retry at now + backoff, or park
 * ```
 *
 * @module
 */

/** An event as `outbox.add` takes it. */
export interface NewOutboxEvent {
  /** The event id, also the broker's dedup id. Default: a fresh UUIDv7. At most 200 characters. */
  id?: string;
  /** Where it goes: a queue, routing key, subject or webhook name (the publisher decides). */
  topic: string;
  /** Ordering key: an event is not published while an earlier event with the same key is unpublished. */
  key?: string;
  /** Any JSON value. */
  payload: unknown;
  /** String headers carried to the broker with the event. */
  headers?: Record<string, string>;
  /** Do not publish before this many ms from now. Default 0. */
  delayMs?: number;
}

/** An event as the relay claimed it and hands it to a publisher. */
export interface OutboxEvent {
  id: string;
  topic: string;
  key: string | null;
  payload: unknown;
  headers: Record<string, string>;
  /** This claim's attempt number, from 1. */
  attempts: number;
  /** When `add` wrote it, epoch ms. */
  createdAt: number;
}

/**
 * What a publisher answers for one event: published (the broker confirmed it, duplicates
 * included), or failed, to be retried later or parked now (`park: true`: retrying cannot help).
 */
export type PublishResult = { ok: true } | { ok: false; error: string; park?: boolean };

/**
 * Sends a batch to a broker with each event's id as the broker's dedup id. Answers one result
 * per event, in the batch's order. Throwing fails the whole batch (retried with backoff).
 *
 * @example
 * const logPublisher: Publisher = {
 *   name: 'log',
 *   async publish(events) { for (const e of events) console.log(e.id); return events.map(() => ({ ok: true })); },
 * };
 */
export interface Publisher {
  name: string;
  publish(events: readonly OutboxEvent[], signal: AbortSignal): Promise<PublishResult[]>;
}

/** A failed event, as the relay writes it back. */
export interface FailedEvent {
  id: string;
  error: string;
  /** Retry no earlier than this many ms from now; ignored when `park`. */
  retryInMs: number;
  park: boolean;
}

/** Counts of an outbox table's rows, for operations and tests. */
export interface OutboxStats {
  pending: number;
  published: number;
  parked: number;
}

/** A parked event, with the error that parked it. */
export interface ParkedEvent {
  id: string;
  topic: string;
  key: string | null;
  attempts: number;
  lastError: string | null;
}

/**
 * The storage side of an outbox (Postgres or SQLite), as the relay drives it. Built by
 * `postgresOutbox()` or `sqliteOutbox()`; a user rarely calls these directly.
 *
 * @example
 * const events = await outbox.claim(100, 30_000, 'relay-1:batch-7');
 */
export interface OutboxBackend {
  readonly kind: 'postgres' | 'sqlite';
  /** Creates the table and indexes when missing. Idempotent; safe from several processes. */
  migrate(): Promise<void>;
  /**
   * Claims up to `limit` due events under a lease of `leaseMs` for `owner`: only the oldest
   * unpublished event of each ordering key, none leased by another owner. Bumps attempts.
   */
  claim(limit: number, leaseMs: number, owner: string): Promise<OutboxEvent[]>;
  markPublished(ids: readonly string[]): Promise<void>;
  /** Writes failures back, fenced by `owner` (a claim that lost its lease writes nothing). */
  markFailed(failures: readonly FailedEvent[], owner: string): Promise<void>;
  /** Deletes published events older than `olderThanMs`; answers how many. */
  purge(olderThanMs: number): Promise<number>;
  /** Parked events, oldest first. */
  parked(limit?: number): Promise<ParkedEvent[]>;
  /** Puts parked events (all, or those ids) back to pending with attempts reset; answers how many. */
  retryParked(ids?: readonly string[]): Promise<number>;
  stats(): Promise<OutboxStats>;
  /** Calls `onWake` when events may have been added (Postgres LISTEN); answers a stop function. */
  listen?(onWake: () => void, onError: (err: unknown) => void): () => Promise<void>;
  close(): Promise<void>;
}

/**
 * The engine's public types: instance and per-call options, the action, what `execute`
 * answers, and the idem instance itself.
 *
 * @module
 */
import type { Duration } from './duration.ts';
import type { IdemEvent } from './events.ts';
import type { ActionContext } from './holder.ts';
import type { ConsumeHandler, ConsumeOptions, ConsumeResult, MessageRef } from './inbox.ts';
import type { InProgressPolicy } from './options.ts';
import type { ReplayCacheOptions } from './replay-cache.ts';
import type { Store } from './store.ts';

/**
 * Options of `createIdem`; every per-call option in {@link RunOptions} overrides these.
 * Checked by `resolveRunOptions` (see docs/engine.md, *Option validation*).
 *
 * @example
 * const options: IdemOptions = { store: memoryStore(), ttl: '24h', lease: '30s', onInProgress: 'wait' };
 */
export interface IdemOptions {
  store: Store;
  /** How long a completed outcome is kept and replayed. Default `'24h'`. */
  ttl?: Duration;
  /** How long a holder owns the key without renewing. Renewed every lease/3. Default `'30s'`. */
  lease?: Duration;
  /** `'reject'` (default) throws `InProgressError`; `'wait'` waits for the holder's outcome. */
  onInProgress?: InProgressPolicy;
  /** How long `'wait'` waits before throwing `InProgressError`. Default `'30s'`. */
  waitTimeout?: Duration;
  /**
   * After a first attempt releases the key (an error, `releaseIf`), how long its fingerprint
   * is kept: a retry with another input gets `FingerprintMismatchError`, the same input runs
   * as attempt 1. `0` frees the key for any input at once. Default `'1m'`, never more than `ttl`.
   */
  releaseGuard?: Duration;
  /** Scope parts prefixed to every key (service, tenant…). Part of the hashed record id. */
  scope?: string | readonly string[];
  /** Largest serialized outcome stored, in bytes. Default 4 MiB. */
  maxOutcomeBytes?: number;
  /**
   * Keep completed outcomes in process memory, so repeated replays of hot keys skip the store.
   * Safe: a completed record cannot change before it expires. Off by default; `true` for the
   * defaults (10 000 entries, 32 MiB) or `{ maxEntries, maxBytes, marginMs }`.
   */
  replayCache?: boolean | ReplayCacheOptions;
  /** Errors for which this returns true are stored and replayed instead of releasing the key. */
  definitive?: (error: unknown) => boolean;
  /** Receives an event per transition, for metrics and logs. Never receives raw keys. */
  onEvent?: (event: IdemEvent) => void;
}

/**
 * Per-call options of `run` / `execute`, checked before anything touches the store.
 *
 * @example
 * await idem.run(key, pay, { input: body, exclude: ['meta.*'], lease: '10s' });
 */
export interface RunOptions<T = unknown> {
  /** The input whose canonical JSON fingerprint is bound to the key at claim time. */
  input?: unknown;
  /** A precomputed fingerprint, instead of `input`. */
  fingerprint?: string;
  /** Dot paths left out of the fingerprint (`'traceId'`, `'meta.sentAt'`, `'items.*.nonce'`). */
  exclude?: readonly string[];
  /** Scope parts (tenant, principal, operation) added to the instance scope. */
  scope?: string | readonly string[];
  ttl?: Duration;
  lease?: Duration;
  onInProgress?: InProgressPolicy;
  waitTimeout?: Duration;
  releaseGuard?: Duration;
  /** Return true to hand this value to the caller but release the key (a transient result). */
  releaseIf?: (value: T) => boolean;
  definitive?: (error: unknown) => boolean;
}

/**
 * The action guarded by a key.
 *
 * @example
 * const action: Action<Receipt> = (ctx) => payments.post(claim, { idempotencyKey: ctx.downstreamKey });
 */
export type Action<T> = (ctx: ActionContext) => T | Promise<T>;

/**
 * What `execute` answers.
 *
 * @example
 * const { value, replayed, attempt, recordId } = await idem.execute(key, action);
 */
export interface ExecuteResult<T> {
  value: T;
  /** True when the action did not run for this call and the value is a stored (or shared) one. */
  replayed: boolean;
  attempt: number;
  recordId: string;
}

/**
 * The idem instance `createIdem` answers.
 *
 * @example
 * const idem: Idem = createIdem({ store: memoryStore() });
 * const { recordId, downstreamKey } = idem.ids('order-42');
 */
export interface Idem {
  /** Runs `action` once per key and answers every later call with the stored outcome. */
  run<T>(key: string, action: Action<T>, options?: RunOptions<T>): Promise<T>;
  /** Like `run`, with `replayed`, `attempt` and `recordId`. */
  execute<T>(key: string, action: Action<T>, options?: RunOptions<T>): Promise<ExecuteResult<T>>;
  /** A deterministic key: `namespace:` + SHA-256 of the canonical JSON of `parts`. */
  key(namespace: string, ...parts: unknown[]): string;
  /**
   * The hashed record id and the downstream key a call with this key and scope would use,
   * without touching the store (instance scope included).
   */
  ids(key: string, scope?: string | readonly string[]): { recordId: string; downstreamKey: string };
  /** Deletes expired records in batches of `batchSize`; answers how many. */
  purgeExpired(options?: { batchSize?: number; maxBatches?: number }): Promise<number>;
  /**
   * Runs a message's handler once per `consumer` + `messageId` (see docs/queues/inbox.md):
   * answers `processed`, `duplicate` (the recorded value), `retry` or `parked`, with `next`
   * telling a broker adapter to ack, retry or dead-letter.
   */
  consumeOnce<T>(
    ref: MessageRef,
    handler: ConsumeHandler<T>,
    options?: ConsumeOptions,
  ): Promise<ConsumeResult<T>>;
  /** Closes the store. */
  close(): Promise<void>;
  readonly store: Store;
}

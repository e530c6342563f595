/**
 * The inbox: `idem.consumeOnce({ consumer, messageId }, handler)` runs a message's handler once
 * per consumer, over the engine's `execute`, so every store works. Broker adapters
 * (`idem/bullmq`, `idem/amqp`, `idem/nats`) only map the answer's `next` to ack / retry /
 * dead-letter.
 *
 * ```
 * key      inbox:<sha256(consumer, messageId)>                the message's record (engine)
 * slot n   inbox-attempt:<sha256(consumer, messageId, n)>     the n-th failed (or crashed) run
 *
 * delivery ─▶ execute(key) ─┬─ replayed ─────────────────────▶ duplicate  (next: ack | dead_letter)
 *                           ├─ InProgressError ──────────────▶ retry      (in_progress)
 *                           └─ holder: failed runs ≥ max? ───▶ parked (stored outcome)
 *                                      handler ok ───────────▶ processed  (stored outcome, ack)
 *                                      handler throws ───────▶ claim slot n; n ≥ max? parked : retry
 * ```
 *
 * Failed runs are counted in the store (one claimed record per failed run), so the count holds
 * across processes and redeliveries; a run that died (the next holder takes the lease over with
 * `mayHaveRun`) counts as a failed run too, so a message that crashes its worker is parked as well.
 *
 * @module
 */

import { toMs } from './duration.ts';
import {
  FingerprintMismatchError,
  InProgressError,
  InvalidOptionError,
  isIdemError,
  LeaseLostError,
  StoreUnavailableError,
} from './errors.ts';
import type { ActionContext } from './holder.ts';
import { checkOptions, checkRef } from './inbox-options.ts';
import type { ConsumeHandler, ConsumeOptions, ConsumeResult, MessageRef } from './inbox-types.ts';
import { deriveKey } from './keys.ts';
import {
  decodeOutcome,
  encodeOutcome,
  isDefinitiveFailure,
  type SerializedError,
  serializeError,
} from './outcome.ts';
import type { Store } from './store.ts';

export { checkConsumeOptions } from './inbox-options.ts';

export type {
  ConsumeContext,
  ConsumeHandler,
  ConsumeNext,
  ConsumeOptions,
  ConsumeResult,
  MessageRef,
} from './inbox-types.ts';

/** Retry after an in-progress answer: at least this… */
const MIN_RETRY_MS = 100;
/** …and at most this, or the holder's lease left when shorter: a live holder usually ends soon. */
const MAX_IN_PROGRESS_RETRY_MS = 2000;

/** The part of `execute`'s answer the inbox reads (kept here: types.ts imports this module). */
interface Executed<T> {
  value: T;
  replayed: boolean;
  attempt: number;
}

/**
 * What the inbox needs from the engine (`createIdem` passes its own).
 *
 * @example
 * const deps: InboxDeps = { store, execute, ids, ttlMs: 86_400_000 };
 */
export interface InboxDeps {
  store: Store;
  execute<T>(
    key: string,
    action: (ctx: ActionContext) => Promise<T>,
    options: ConsumeOptions & { onInProgress: 'reject'; releaseIf: (value: T) => boolean },
  ): Promise<Executed<T>>;
  ids(key: string, scope?: string | readonly string[]): { recordId: string; downstreamKey: string };
  definitive?: ((error: unknown) => boolean) | undefined;
  /** The instance's ttl: failed-run slots live as long as message records. */
  ttlMs: number;
}

/**
 * What the holder answers: its handler's value or parked (both stored), or a failed run to
 * retry (handed back through `releaseIf`, so the key is released and nothing is stored; no
 * error is thrown through the engine, so no `definitive` classifier can store it).
 */
type Envelope<T> =
  | { v: T }
  | { parked: { error: SerializedError; attempts: number } }
  | { retry: { error: unknown; failures: number } };
/** A failed run, recorded in a slot: the error and the engine attempt it ran as. */
interface FailedRun {
  error: SerializedError;
  engineAttempt: number;
}

/**
 * Builds `consumeOnce` over an engine.
 *
 * @example
 * const consumeOnce = createConsumeOnce({ store, execute, ids });
 * const r = await consumeOnce({ consumer: 'billing', messageId: 'evt-1' }, (ctx) => charge(ctx.downstreamKey));
 * if (r.next === 'ack') channel.ack(msg);
 */
export function createConsumeOnce(deps: InboxDeps) {
  return async function consumeOnce<T>(
    ref: MessageRef,
    handler: ConsumeHandler<T>,
    options: ConsumeOptions = {},
  ): Promise<ConsumeResult<T>> {
    const { consumer, messageId } = checkRef(ref);
    if (typeof handler !== 'function')
      throw new InvalidOptionError('consumeOnce: handler must be a function');
    const { maxAttempts, retryDelay, ...run } = checkOptions(options);
    const scope = run.scope;
    const slotId = (n: number) =>
      deps.ids(deriveKey('inbox-attempt', [consumer, messageId, n]), scope).recordId;
    // failed-run slots live as long as the message's record
    const slotTtl = run.ttl === undefined ? deps.ttlMs : toMs(run.ttl, 'ttl');

    /** Failed runs recorded so far, and the last one. */
    async function failures(): Promise<{ count: number; last: FailedRun | undefined }> {
      let last: FailedRun | undefined;
      for (let n = 1; n <= maxAttempts; n++) {
        const rec = await deps.store.get(slotId(n));
        if (rec?.state !== 'completed' || rec.outcome === undefined) return { count: n - 1, last };
        const out = decodeOutcome(rec.outcome);
        last = out.kind === 'value' ? (out.value as FailedRun) : undefined;
      }
      return { count: maxAttempts, last };
    }

    /** Records a failed run in the first free slot from `from`; answers its number. */
    async function recordFailure(run: FailedRun, from: number): Promise<number> {
      const encoded = encodeOutcome({ kind: 'value', value: run });
      for (let n = Math.max(1, from); n <= maxAttempts; n++) {
        const token = crypto.randomUUID();
        const id = slotId(n);
        const claim = await deps.store.claim({ id, fingerprint: '', leaseMs: 60_000, ttlMs: slotTtl, token });
        if (claim.status === 'acquired') {
          await deps.store.complete(id, token, encoded, slotTtl);
          return n;
        }
      }
      return maxAttempts;
    }

    const key = deriveKey('inbox', [consumer, messageId]);
    const action = async (ctx: ActionContext): Promise<Envelope<T>> => {
      let prior = 0;
      let lastError: SerializedError | undefined;
      // A broker's redelivery flag cannot be trusted (a republished retry looks like a first
      // delivery), so the failure count is read on every delivery (one store read when there is
      // none) and ctx.attempt always agrees with the recorded failures.
      const known = await failures();
      prior = known.count;
      // A takeover follows either a holder that died (or lost its lease) or a holder that was a
      // takeover itself (attempt >= 2) and released after a recorded failure. Attempt 1 never
      // leaves a record to take over when it fails: the release deletes it.
      const releasedBefore = known.last !== undefined && known.last.engineAttempt >= 2;
      if (
        ctx.mayHaveRun &&
        !(releasedBefore && known.last?.engineAttempt === ctx.attempt - 1) &&
        prior < maxAttempts
      ) {
        lastError = serializeError(
          new Error('an earlier run ended without an outcome (worker died or lost its lease)'),
        );
        prior = await recordFailure({ error: lastError, engineAttempt: ctx.attempt - 1 }, prior + 1);
      }
      if (prior >= maxAttempts) {
        const error = lastError ?? known.last?.error ?? serializeError(new Error('too many failed runs'));
        return { parked: { error, attempts: prior } };
      }
      // the reads above take time: a holder whose lease ran out meanwhile must not start the effect
      if (ctx.signal.aborted) throw ctx.signal.reason;
      try {
        const value = await handler({
          consumer,
          messageId,
          attempt: prior + 1,
          mayHaveRun: ctx.mayHaveRun,
          signal: ctx.signal,
          recordId: ctx.recordId,
          get downstreamKey() {
            return ctx.downstreamKey;
          },
        });
        return { v: value };
      } catch (error) {
        if (isDefinitiveFailure(error, run.definitive, deps.definitive)) {
          return { parked: { error: serializeError(error), attempts: prior + 1 } };
        }
        const n = await recordFailure(
          { error: serializeError(error), engineAttempt: ctx.attempt },
          prior + 1,
        );
        if (n >= maxAttempts) return { parked: { error: serializeError(error), attempts: n } };
        return { retry: { error, failures: n } };
      }
    };

    let result: Executed<Envelope<T>>;
    try {
      result = await deps.execute(key, action, {
        ...run,
        onInProgress: 'reject',
        definitive: undefined,
        releaseIf: (env) => 'retry' in env,
      });
    } catch (error) {
      return retryOrThrow(error);
    }
    const env = result.value;
    if ('retry' in env) {
      const { error, failures } = env.retry;
      return {
        status: 'retry',
        next: 'retry',
        duplicate: false,
        reason: 'failed',
        error,
        attempts: failures,
        retryAfterMs: checkDelay(retryDelay(failures)),
      };
    }
    if ('parked' in env) {
      return {
        status: 'parked',
        next: 'dead_letter',
        duplicate: result.replayed,
        error: env.parked.error,
        attempts: env.parked.attempts,
      };
    }
    return result.replayed
      ? { status: 'duplicate', next: 'ack', duplicate: true, value: env.v, attempt: result.attempt }
      : { status: 'processed', next: 'ack', duplicate: false, value: env.v, attempt: result.attempt };
  };
}

/** Maps what `execute` threw to a retry answer; programming errors are thrown on. */
function checkDelay(ms: unknown): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new InvalidOptionError(
      `consumeOnce: retryDelay must answer a finite number of milliseconds ≥ 0, got ${String(ms)}`,
    );
  }
  return ms;
}

function retryOrThrow(error: unknown): ConsumeResult<never> {
  const retry = (reason: 'in_progress' | 'lease_lost' | 'store_unavailable', retryAfterMs: number) =>
    ({ status: 'retry', next: 'retry', duplicate: false, reason, error, attempts: 0, retryAfterMs }) as const;
  if (error instanceof InProgressError)
    return retry(
      'in_progress',
      Math.max(MIN_RETRY_MS, Math.min(MAX_IN_PROGRESS_RETRY_MS, error.retryAfterMs)),
    );
  if (error instanceof LeaseLostError) return retry('lease_lost', MIN_RETRY_MS);
  if (error instanceof StoreUnavailableError) return retry('store_unavailable', 1000);
  if (error instanceof FingerprintMismatchError) {
    return {
      status: 'rejected',
      next: 'dead_letter',
      duplicate: false,
      reason: 'fingerprint_mismatch',
      error,
    };
  }
  if (isIdemError(error)) throw error;
  // a failure the holder let through unwrapped (a failing store on the failure count): retry
  return retry('store_unavailable', 1000);
}

/**
 * What the holder of a key does: run the action under a heartbeat, then store its outcome or
 * release the key, by the failure policy. Whatever happens, the heartbeat stops here.
 *
 * @module
 */
import type { OutcomeCodec } from './encryption.ts';
import { OutcomeTooLargeError, StoreUnavailableError } from './errors.ts';
import type { IdemEvent } from './events.ts';
import { downstreamKeyOf } from './keys.ts';
import { leaseLost, lostBecause, startHeartbeat } from './lease.ts';
import { encodeOutcome, isDefinitive, type Outcome, serializeError } from './outcome.ts';
import type { Store } from './store.ts';

const COMPLETE_RETRY_MS = [50, 150, 400];

/** What the action receives. */
export interface ActionContext {
  key: string;
  recordId: string;
  /** The fencing token of this holder. */
  token: string;
  /** 1 for the first holder; +1 for every takeover of an expired lease. */
  attempt: number;
  /** True when an earlier holder's lease expired mid-action: its effect may have happened. */
  mayHaveRun: boolean;
  /** Aborts with `LeaseLostError` when this holder loses the lease. */
  signal: AbortSignal;
  /** A key derived from the record, stable across attempts: pass it to downstream APIs. */
  downstreamKey: string;
}

/** One holder's run: the claim it won and how to finish. */
export interface HolderRun<T> {
  key: string;
  recordId: string;
  token: string;
  attempt: number;
  takeover: boolean;
  leaseMs: number;
  ttlMs: number;
  /** How long a release on attempt 1 keeps the fingerprint (0: the key is new at once). */
  releaseGuardMs: number;
  /** `performance.now()` when the winning claim was sent: the lease surely ends by this + leaseMs. */
  claimSentAt: number;
  action: (ctx: ActionContext) => T | Promise<T>;
  releaseIf?: ((value: T) => boolean) | undefined;
  definitive?: ((error: unknown) => boolean) | undefined;
  /** Called when the holder releases instead of storing (error, releaseIf). */
  onRelease: () => void;
  /** Called with the new local lease end after each renewal. */
  onRenew: (localLeaseEnd: number) => void;
}

interface HolderDeps {
  store: Store;
  emit: ((event: IdemEvent) => void) | undefined;
  maxOutcomeBytes: number;
  definitive?: ((error: unknown) => boolean) | undefined;
  /** Seals outcomes before they reach the store (encryption at rest, or none). */
  codec: OutcomeCodec;
}

/** Builds the holder routine for one engine. */
export function createHolder({ store, emit, maxOutcomeBytes, definitive, codec }: HolderDeps) {
  return async function hold<T>(run: HolderRun<T>): Promise<T> {
    const { recordId, token, attempt, leaseMs, ttlMs } = run;
    const controller = new AbortController();
    const heartbeat = startHeartbeat({
      store,
      id: recordId,
      token,
      leaseMs,
      intervalMs: Math.max(10, leaseMs / 3),
      leaseEnd: run.claimSentAt + leaseMs,
      controller,
      onRenew: run.onRenew,
      onError: (error) => emit?.({ type: 'store_error', recordId, error }),
    });
    const startedAt = Date.now();
    const release = async () => {
      heartbeat.stop();
      run.onRelease();
      try {
        // refused: another holder took over (or the record is gone); nothing was released
        const released = await store.release(recordId, token, run.releaseGuardMs);
        emit?.({ type: released ? 'released' : 'lease_lost', recordId });
      } catch (error) {
        // the lease runs out on its own; the original error matters more
        emit?.({ type: 'store_error', recordId, error });
      }
    };
    try {
      let value: T;
      try {
        value = await run.action({
          key: run.key,
          recordId,
          token,
          attempt,
          mayHaveRun: run.takeover,
          signal: controller.signal,
          get downstreamKey() {
            return downstreamKeyOf(recordId); // computed only when the action asks for it
          },
        });
        heartbeat.settle();
      } catch (error) {
        heartbeat.settle();
        if (!isStoredError(error, run.definitive, definitive)) {
          await release();
          throw error;
        }
        await complete({ kind: 'error', error: serializeError(error) }, undefined, error);
        emit?.({ type: 'completed', recordId, attempt, durationMs: Date.now() - startedAt, error: true });
        throw error;
      }

      let classifierError: unknown;
      try {
        if (run.releaseIf?.(value)) {
          await release();
          return value;
        }
      } catch (error) {
        classifierError = error; // a successful action is stored anyway: re-running it is worse
      }
      let encoded: string;
      try {
        encoded = encodeOutcome({ kind: 'value', value });
      } catch (cause) {
        const error = new TypeError(`the action's result cannot be stored: ${(cause as Error).message}`);
        await complete({ kind: 'error', error: serializeError(error) }, value);
        throw error;
      }
      const bytes = Buffer.byteLength(encoded);
      if (bytes > maxOutcomeBytes) await tooLarge(bytes, maxOutcomeBytes, value);
      await completeEncoded(encoded, value);
      emit?.({ type: 'completed', recordId, attempt, durationMs: Date.now() - startedAt });
      if (classifierError !== undefined) throw classifierError;
      return value;
    } finally {
      heartbeat.stop();
    }

    /** `failure`: the action's own error, when that is the outcome being stored. */
    function complete(outcome: Outcome, value: unknown, failure?: unknown) {
      return completeEncoded(encodeOutcome(outcome), value, failure);
    }

    async function tooLarge(bytes: number, limit: number, value: unknown): Promise<never> {
      await complete({ kind: 'too_large', bytes, limit }, value);
      emit?.({ type: 'too_large', recordId, bytes });
      throw new OutcomeTooLargeError(bytes, limit, value);
    }

    /** Completes, retrying a failing store a few times; never releases after the action ran. */
    async function completeEncoded(encoded: string, value: unknown, failure?: unknown): Promise<void> {
      for (let i = 0; ; i++) {
        let ok: boolean;
        try {
          ok = await store.complete(recordId, token, codec.seal(recordId, encoded), ttlMs);
        } catch (error) {
          emit?.({ type: 'store_error', recordId, error });
          // The store refused the size: store the marker instead, so retries do not re-run.
          if (error instanceof OutcomeTooLargeError) return tooLarge(error.bytes, error.limit, value);
          const delay = COMPLETE_RETRY_MS[i];
          if (delay === undefined) throw notStored(error, value, failure);
          await new Promise((r) => setTimeout(r, delay));
          continue;
        }
        if (!ok) {
          emit?.({ type: 'lease_lost', recordId });
          throw leaseLost(await lostBecause(store, recordId, token, leaseMs), value);
        }
        return;
      }
    }
  };
}

/**
 * The store failed to take the outcome. A failed action's own error stays the `cause`, so it
 * is never lost behind the store's.
 */
function notStored(storeError: unknown, value: unknown, failure: unknown): StoreUnavailableError {
  const why = (storeError as Error)?.message ?? String(storeError);
  if (failure === undefined) {
    return new StoreUnavailableError(
      `the action completed but its outcome could not be stored (${why}); the key stays claimed until its lease ends`,
      { cause: storeError, actionCompleted: true, value },
    );
  }
  const f = failure as Error;
  return new StoreUnavailableError(
    `the action failed with ${f?.name ?? 'Error'}: ${f?.message ?? String(failure)}, and that error could not be stored (${why}); the key stays claimed until its lease ends; the action's error is this error's cause`,
    { cause: failure, actionCompleted: true },
  );
}

/** A thrown error is stored when marked or classified definitive; a throwing classifier means no. */
function isStoredError(
  error: unknown,
  ...classifiers: Array<((e: unknown) => boolean) | undefined>
): boolean {
  if (isDefinitive(error)) return true;
  for (const classify of classifiers) {
    try {
      if (classify?.(error)) return true;
    } catch {
      // a broken classifier must not hold the key: treat the error as transient
    }
  }
  return false;
}

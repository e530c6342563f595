/**
 * One call's turn on a key, across processes: claim it (waiting by policy while another
 * holder runs), then either hold it (run the action, store or release) or replay the stored
 * outcome.
 *
 * ```
 * claim ─┬─ acquired ─────────────▶ hold: heartbeat, action, complete | release
 *        ├─ completed, same input ─▶ replay (and fill the replay cache)
 *        ├─ other fingerprint ─────▶ FingerprintMismatchError
 *        ├─ held, 'reject' ────────▶ InProgressError (retryAfterMs = lease left)
 *        ├─ held, 'wait' ──────────▶ re-claim with backoff / wake-ups until one of the above
 *        └─ store failed ──────────▶ StoreUnavailableError; the sent token is released later
 * ```
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import type { OutcomeCodec } from './encryption.ts';
import {
  FingerprintMismatchError,
  InProgressError,
  isIdemError,
  OutcomeTooLargeError,
  StoreUnavailableError,
} from './errors.ts';
import type { IdemEvent } from './events.ts';
import type { createHolder } from './holder.ts';
import { sameFingerprint } from './keys.ts';
import type { LateClaimUndo } from './late-claim.ts';
import type { InProgressPolicy } from './options.ts';
import { decodeOutcome, reviveError } from './outcome.ts';
import type { ReplayCache } from './replay-cache.ts';
import type { Inflight, SetState } from './single-flight.ts';
import type { Store } from './store.ts';
import type { Action, ExecuteResult, RunOptions } from './types.ts';
import { waitForTurn } from './wait.ts';

/** One `execute` call, its options resolved against the instance defaults. */
export interface Call<T> {
  key: string;
  action: Action<T>;
  opts: RunOptions<T>;
  recordId: string;
  fingerprint: string;
  policy: InProgressPolicy;
  leaseMs: number;
  ttlMs: number;
  waitMs: number;
  releaseGuardMs: number;
}

interface TurnDeps {
  store: Store;
  emit: ((event: IdemEvent) => void) | undefined;
  cache: ReplayCache | undefined;
  hold: ReturnType<typeof createHolder>;
  lateClaims: LateClaimUndo;
  /** Opens stored outcomes (encryption at rest, or none). */
  codec: OutcomeCodec;
}

/**
 * Builds the claim → hold | replay routine of one engine, and the guard every store call
 * goes through.
 *
 * @example
 * const turns = createTurns({ store, emit, cache, hold, lateClaims });
 * flights.start(call.recordId, call.fingerprint, (entry, setState) => turns.take(call, entry, setState));
 */
export function createTurns({ store, emit, cache, hold, lateClaims, codec }: TurnDeps) {
  /** Runs `fn` on the store; any failure is emitted and becomes a StoreUnavailableError. */
  function storeCall<R>(recordId: string, fn: () => Promise<R>): Promise<R> {
    let pending: Promise<R>;
    try {
      pending = fn();
    } catch (error) {
      pending = Promise.reject(error); // a store that throws instead of rejecting
    }
    return pending.catch((error: unknown) => {
      emit?.({ type: 'store_error', recordId, error });
      if (isIdemError(error)) throw error;
      throw new StoreUnavailableError(`${store.name} store failed: ${(error as Error)?.message}`, {
        cause: error,
      });
    });
  }

  /** The stored outcome as this call's answer: a value, or the stored error thrown again. */
  function replay<T>(recordId: string, stored: string, attempt: number, cached: boolean): ExecuteResult<T> {
    const outcome = decodeOutcome(stored);
    emit?.({ type: 'replayed', recordId, attempt, shared: false, ...(cached && { cached }) });
    if (outcome.kind === 'error') throw reviveError(outcome.error);
    if (outcome.kind === 'too_large') throw new OutcomeTooLargeError(outcome.bytes, outcome.limit);
    return { value: outcome.value as T, replayed: true, attempt, recordId };
  }

  /** Claims the key for `call` (waiting by policy), then holds it or replays its outcome. */
  async function take<T>(call: Call<T>, entry: Inflight, setState: SetState): Promise<ExecuteResult<T>> {
    const { recordId, fingerprint, leaseMs, ttlMs } = call;
    const turn = await waitForTurn({
      store,
      recordId,
      waitMs: call.policy === 'wait' ? call.waitMs : 0,
      claim: async () => {
        const token = randomUUID();
        const sentAt = performance.now(); // monotonic: the lease is counted from here
        try {
          const result = await storeCall(recordId, () =>
            store.claim({ id: recordId, fingerprint, leaseMs, ttlMs, token }),
          );
          return { result, token, sentAt };
        } catch (error) {
          // the claim was sent and may still land: undo it once the store answers again
          if (error instanceof StoreUnavailableError) lateClaims.undo(recordId, token, call.releaseGuardMs);
          throw error;
        }
      },
      accept: (record) => {
        if (!sameFingerprint(record.fingerprint, fingerprint)) {
          emit?.({ type: 'mismatch', recordId });
          throw new FingerprintMismatchError();
        }
        return record.state === 'completed';
      },
      onWait: (leaseLeft) => {
        setState('waiting', Date.now() + leaseLeft);
        emit?.({ type: 'wait', recordId });
      },
      // every re-claim sees the holder's renewed lease: later joiners get a current retryAfterMs
      onLease: (leaseLeft) => (entry.leaseEnd = Date.now() + leaseLeft),
    });
    if (turn.kind === 'busy') {
      emit?.({ type: 'in_progress', recordId });
      throw new InProgressError(
        turn.retryAfterMs,
        turn.timedOut ? 'gave up waiting for the holder' : undefined,
      );
    }
    if (turn.kind === 'completed') {
      const { record } = turn;
      const outcome = codec.open(record.id, record.outcome ?? '');
      cache?.set(record.id, { fingerprint, outcome, attempt: record.attempt }, record.expiresAt, turn.now);
      return replay<T>(record.id, outcome, record.attempt, false);
    }

    setState('holder', Date.now() + (turn.sentAt + leaseMs - performance.now()));
    emit?.({ type: turn.takeover ? 'takeover' : 'acquired', recordId, attempt: turn.attempt });
    const value = await hold({
      key: call.key,
      recordId,
      token: turn.token,
      attempt: turn.attempt,
      takeover: turn.takeover,
      leaseMs,
      ttlMs,
      releaseGuardMs: call.releaseGuardMs,
      claimSentAt: turn.sentAt,
      action: call.action,
      releaseIf: call.opts.releaseIf,
      definitive: call.opts.definitive,
      onRelease: () => (entry.released = true),
      onRenew: (leaseEnd) => (entry.leaseEnd = leaseEnd),
    });
    return { value, replayed: false, attempt: turn.attempt, recordId };
  }

  return { take, replay, storeCall };
}

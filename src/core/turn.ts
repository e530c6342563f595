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

import { randomBytes } from 'node:crypto';
import type { Call } from './call.ts';
import type { OutcomeCodec } from './encryption.ts';
import {
  FingerprintMismatchError,
  InProgressError,
  isIdemError,
  OutcomeTooLargeError,
  StoreUnavailableError,
} from './errors.ts';
import type { IdemEvent } from './events.ts';
import type { createHolder, Won } from './holder.ts';
import { sameFingerprint } from './keys.ts';
import type { LateClaimUndo } from './late-claim.ts';
import { decodeOutcome, NOT_PLAIN, plainValueOf, reviveError } from './outcome.ts';
import type { ReplayCache } from './replay-cache.ts';
import type { Inflight, SingleFlight } from './single-flight.ts';
import type { ClaimResult, Store, StoreRecord } from './store.ts';
import type { ExecuteResult } from './types.ts';
import { type Claimed, waitForTurn } from './wait.ts';

/**
 * Fencing tokens for the claims of one engine: 96 random bits drawn once, then a counter.
 * Every token is unique (across processes by the random part, within this engine by the
 * counter), which is all fencing needs, and costs a string concatenation instead of a
 * random UUID per call (replays claim too, so they paid for one).
 *
 * @example
 * const newToken = createTokens();
 * newToken() // 'Yk2f…Q.1'
 */
export function createTokens(): () => string {
  const prefix = `${randomBytes(12).toString('base64url')}.`;
  let n = 0;
  return () => prefix + (++n).toString(36);
}

interface TurnDeps {
  store: Store;
  emit: ((event: IdemEvent) => void) | undefined;
  cache: ReplayCache | undefined;
  hold: ReturnType<typeof createHolder>;
  flights: SingleFlight;
  lateClaims: LateClaimUndo;
  /** Opens stored outcomes (encryption at rest, or none). */
  codec: OutcomeCodec;
}

/**
 * Builds the claim → hold | replay routine of one engine, and the guard every store call
 * goes through.
 *
 * @example
 * const turns = createTurns({ store, emit, cache, hold, flights, lateClaims, codec });
 * const entry = flights.begin(call.recordId, call.fingerprint);
 * const result = await turns.take(call, entry);
 */
export function createTurns({ store, emit, cache, hold, flights, lateClaims, codec }: TurnDeps) {
  const newToken = createTokens();

  /** A store failure, emitted, as the error the caller gets (a StoreUnavailableError). */
  function storeFailure(recordId: string, error: unknown): unknown {
    emit?.({ type: 'store_error', recordId, error });
    if (isIdemError(error)) return error;
    return new StoreUnavailableError(`${store.name} store failed: ${(error as Error)?.message}`, {
      cause: error,
    });
  }

  /** Runs `fn` on the store; any failure is emitted and becomes a StoreUnavailableError. */
  function storeCall<R>(recordId: string, fn: () => Promise<R>): Promise<R> {
    let pending: Promise<R>;
    try {
      pending = fn();
    } catch (error) {
      pending = Promise.reject(error); // a store that throws instead of rejecting
    }
    return pending.catch((error: unknown) => {
      throw storeFailure(recordId, error);
    });
  }

  /** Sends one claim for `call` with a new fencing token. */
  async function claim(call: Call<unknown>): Promise<Claimed> {
    const token = newToken();
    const sentAt = performance.now(); // monotonic: the lease is counted from here
    return { result: await claimWith(call, token), token, sentAt };
  }

  async function claimWith(call: Call<unknown>, token: string): Promise<ClaimResult> {
    const { recordId, fingerprint, leaseMs, ttlMs, scopeHash } = call;
    try {
      return await store.claim({ id: recordId, fingerprint, leaseMs, ttlMs, token, scopeHash });
    } catch (cause) {
      throw claimFailed(call, token, cause);
    }
  }

  /** A failed claim as the caller's error; the claim was sent and may still land, so it is undone later. */
  function claimFailed(call: Call<unknown>, token: string, cause: unknown): unknown {
    const error = storeFailure(call.recordId, cause);
    if (error instanceof StoreUnavailableError) lateClaims.undo(call.recordId, token, call.releaseGuardMs);
    return error;
  }

  /** Throws for a record this call must not use; true when it holds a completed outcome. */
  function accept(record: StoreRecord, fingerprint: string): boolean {
    if (!sameFingerprint(record.fingerprint, fingerprint)) {
      emit?.({ type: 'mismatch', recordId: record.id });
      throw new FingerprintMismatchError();
    }
    return record.state === 'completed';
  }

  /** The stored outcome as this call's answer: a value, or the stored error thrown again. */
  function replay<T>(recordId: string, stored: string, attempt: number, cached: boolean): ExecuteResult<T> {
    const plain = plainValueOf(stored); // the common case: a plain JSON value, no envelope
    const outcome = plain === NOT_PLAIN ? decodeOutcome(stored) : undefined;
    emit?.({ type: 'replayed', recordId, attempt, shared: false, ...(cached && { cached }) });
    if (outcome === undefined) return { value: plain as T, replayed: true, attempt, recordId };
    if (outcome.kind === 'error') throw reviveError(outcome.error);
    if (outcome.kind === 'too_large') throw new OutcomeTooLargeError(outcome.bytes, outcome.limit);
    return { value: outcome.value as T, replayed: true, attempt, recordId };
  }

  /** A completed record found by a claim: cached (when on) and replayed. */
  function replayRecord<T>(record: StoreRecord, fingerprint: string, storeNow: number): ExecuteResult<T> {
    const outcome = codec.open(record.id, record.outcome ?? '');
    cache?.set(record.id, { fingerprint, outcome, attempt: record.attempt }, record.expiresAt, storeNow);
    return replay<T>(record.id, outcome, record.attempt, false);
  }

  /**
   * Claims the key for `call`, then holds it or replays its outcome, as the call in flight for
   * its record (joiners wait for it). The first claim is sent here; only a key held elsewhere
   * under the 'wait' policy goes through the wait loop.
   */
  async function take<T>(call: Call<T>): Promise<ExecuteResult<T>> {
    const { recordId, fingerprint } = call;
    const entry = flights.begin(recordId, fingerprint);
    try {
      const startedAt = performance.now(); // monotonic: the lease is counted from here
      const token = newToken();
      let result: ClaimResult;
      try {
        // the first claim inline (not through claimWith): one async frame less per call
        result = await store.claim({
          id: recordId,
          fingerprint,
          leaseMs: call.leaseMs,
          ttlMs: call.ttlMs,
          token,
          scopeHash: call.scopeHash,
        });
      } catch (cause) {
        throw claimFailed(call as Call<unknown>, token, cause);
      }
      let won: Won;
      if (result.status === 'acquired') {
        won = { token, attempt: result.attempt, takeover: result.takeover, sentAt: startedAt };
      } else {
        const { record, now } = result;
        if (accept(record, fingerprint)) return done(entry, replayRecord<T>(record, fingerprint, now));
        if (call.policy !== 'wait') {
          const leaseLeft = Math.max(0, record.leaseUntil - now);
          entry.leaseEnd = Date.now() + leaseLeft;
          emit?.({ type: 'in_progress', recordId });
          throw new InProgressError(leaseLeft);
        }
        const turn = await waitForTurn({
          store,
          recordId,
          waitMs: call.waitMs,
          startedAt,
          first: { result, token, sentAt: startedAt },
          claim: () => claim(call as Call<unknown>),
          accept: (r) => accept(r, fingerprint),
          onWait: (leaseLeft) => {
            flights.setState(entry, 'waiting', Date.now() + leaseLeft);
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
        if (turn.kind === 'completed')
          return done(entry, replayRecord<T>(turn.record, fingerprint, turn.now));
        won = turn;
      }

      flights.setState(entry, 'holder', Date.now() + (won.sentAt + call.leaseMs - performance.now()));
      emit?.({ type: won.takeover ? 'takeover' : 'acquired', recordId, attempt: won.attempt });
      const value = await hold(call, entry, won);
      return done(entry, { value, replayed: false, attempt: won.attempt, recordId });
    } catch (error) {
      flights.end(entry, undefined, error);
      throw error;
    }
  }

  /** The call in flight settled with `result`: joiners get it. */
  function done<T>(entry: Inflight, result: ExecuteResult<T>): ExecuteResult<T> {
    flights.end(entry, result);
    return result;
  }

  return { take, replay, storeCall };
}

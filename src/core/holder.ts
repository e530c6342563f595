/**
 * What the holder of a key does: run the action under a heartbeat, then store its outcome or
 * release the key, by the failure policy. Whatever happens, the heartbeat stops here.
 *
 * @module
 */
import type { OutcomeCodec } from './encryption.ts';
import { LeaseLostError, OutcomeTooLargeError, StoreUnavailableError } from './errors.ts';
import type { IdemEvent } from './events.ts';
import { downstreamKeyOf } from './keys.ts';
import type { LateClaimUndo } from './late-claim.ts';
import { type Heartbeat, type HeartbeatTimer, leaseLost, lostBecause, startHeartbeat } from './lease.ts';
import { encodeOutcome, isDefinitiveFailure, type Outcome, serializeError } from './outcome.ts';
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

/** Where a holder reports to the in-flight entry of its call (see single-flight.ts). */
export interface HolderFlight {
  /** Set when the holder releases instead of storing (error, releaseIf). */
  released: boolean;
  /** The new local lease end (epoch ms) after each renewal. */
  leaseEnd: number;
}

/** What the holder reads of the call it runs (a `Call`, see call.ts). */
export interface HeldCall<T> {
  key: string;
  recordId: string;
  leaseMs: number;
  ttlMs: number;
  /** How long a release on attempt 1 keeps the fingerprint (0: the key is new at once). */
  releaseGuardMs: number;
  action: (ctx: ActionContext) => T | Promise<T>;
  opts: {
    releaseIf?: ((value: T) => boolean) | undefined;
    definitive?: ((error: unknown) => boolean) | undefined;
  };
}

/** The claim a holder won. */
export interface Won {
  token: string;
  attempt: number;
  takeover: boolean;
  /** `performance.now()` when the winning claim was sent: the lease surely ends by this + leaseMs. */
  sentAt: number;
}

interface HolderDeps {
  store: Store;
  emit: ((event: IdemEvent) => void) | undefined;
  maxOutcomeBytes: number;
  definitive?: ((error: unknown) => boolean) | undefined;
  /** Seals outcomes before they reach the store (encryption at rest, or none). */
  codec: OutcomeCodec;
  /** The heartbeat timer the instance's holders share. */
  beats: HeartbeatTimer;
  /** Releases a claim in the background once the store answers again (a lease it could not confirm). */
  lateClaims: LateClaimUndo;
}

/**
 * Builds the holder routine for one engine.
 *
 * @example
 * const hold = createHolder({ store, emit, maxOutcomeBytes, codec, beats: createHeartbeatTimer(),
 *   lateClaims: createLateClaimUndo(store, emit) });
 * const value = await hold(call, entry, { token, attempt, takeover, sentAt });
 */
export function createHolder({
  store,
  emit,
  maxOutcomeBytes,
  definitive,
  codec,
  beats,
  lateClaims,
}: HolderDeps) {
  /** Gives the key up (the action failed, or releaseIf said so). */
  async function release(call: HeldCall<unknown>, flight: HolderFlight, token: string, heartbeat: Heartbeat) {
    heartbeat.stop();
    flight.released = true;
    const { recordId } = call;
    try {
      // refused: another holder took over (or the record is gone); nothing was released
      const released = await store.release(recordId, token, call.releaseGuardMs);
      emit?.({ type: released ? 'released' : 'lease_lost', recordId });
    } catch (error) {
      // the lease runs out on its own; the original error matters more
      emit?.({ type: 'store_error', recordId, error });
    }
  }

  /** `failure`: the action's own error, when that is the outcome being stored. */
  function complete(
    call: HeldCall<unknown>,
    token: string,
    outcome: Outcome,
    value: unknown,
    failure?: unknown,
  ) {
    return completeEncoded(call, token, encodeOutcome(outcome), value, failure);
  }

  async function tooLarge(
    call: HeldCall<unknown>,
    token: string,
    bytes: number,
    limit: number,
    value: unknown,
  ): Promise<never> {
    await complete(call, token, { kind: 'too_large', bytes, limit }, value);
    emit?.({ type: 'too_large', recordId: call.recordId, bytes });
    throw new OutcomeTooLargeError(bytes, limit, value);
  }

  /** Completes, retrying a failing store a few times; never releases after the action ran. */
  async function completeEncoded(
    call: HeldCall<unknown>,
    token: string,
    encoded: string,
    value: unknown,
    failure?: unknown,
  ): Promise<void> {
    const { recordId } = call;
    for (let i = 0; ; i++) {
      let ok: boolean;
      try {
        ok = await store.complete(recordId, token, codec.seal(recordId, encoded), call.ttlMs);
      } catch (error) {
        emit?.({ type: 'store_error', recordId, error });
        // The store refused the size: store the marker instead, so retries do not re-run.
        if (error instanceof OutcomeTooLargeError)
          return tooLarge(call, token, error.bytes, error.limit, value);
        const delay = COMPLETE_RETRY_MS[i];
        if (delay === undefined) throw notStored(error, value, failure);
        await new Promise((r) => setTimeout(r, delay));
        continue;
      }
      if (!ok) {
        emit?.({ type: 'lease_lost', recordId });
        throw leaseLost(await lostBecause(store, recordId, token, call.leaseMs), value);
      }
      return;
    }
  }

  /**
   * The lease of a claim whose answer came late, confirmed by a renew before the action starts:
   * when the event loop stalled (or the store was slow) for a good part of the lease, the lease
   * may have run out and another caller may already hold the key, and nothing would stop the
   * action in time. Answers when the confirmed lease was sent; throws, the action not run, when
   * the lease is gone (`LeaseLostError`) or the store cannot say (`StoreUnavailableError`).
   */
  async function confirmLease(call: HeldCall<unknown>, token: string): Promise<number> {
    const { recordId, leaseMs } = call;
    const sentAt = performance.now();
    let until: number | undefined;
    try {
      until = await store.renew(recordId, token, leaseMs);
    } catch (error) {
      emit?.({ type: 'store_error', recordId, error });
      // nothing ran: give the key back once the store answers, instead of leaving it held until
      // its lease ends and the next caller takes it over as "may have run"
      lateClaims.undo(recordId, token, call.releaseGuardMs);
      throw new StoreUnavailableError(
        `the claim's answer came late and the store could not confirm its lease, so the action was not run: ${(error as Error)?.message ?? error}`,
        { cause: error },
      );
    }
    if (until !== undefined) return sentAt;
    emit?.({ type: 'lease_lost', recordId });
    const reason = await lostBecause(store, recordId, token, leaseMs);
    throw new LeaseLostError(
      `the claim's answer came after its lease had run out (a stalled process or a slow store) and the key was no longer held, so the action was not run (${reason}): retrying is safe`,
      undefined,
      reason,
    );
  }

  return async function hold<T>(call: HeldCall<T>, flight: HolderFlight, won: Won): Promise<T> {
    const { recordId, leaseMs } = call;
    const { token, attempt } = won;
    // a third of the lease gone before the action could start: confirm the lease first
    const sentAt =
      performance.now() - won.sentAt > leaseMs / 3
        ? await confirmLease(call as HeldCall<unknown>, token)
        : won.sentAt;
    // The signal is made only when the action reads it; a lost lease before that is kept.
    let controller: AbortController | undefined;
    let lost: LeaseLostError | undefined;
    const heartbeat = startHeartbeat({
      store,
      id: recordId,
      token,
      leaseMs,
      intervalMs: Math.max(10, leaseMs / 3),
      leaseEnd: sentAt + leaseMs,
      onLost: (error) => {
        lost = error;
        controller?.abort(error);
      },
      onRenew: (leaseEnd) => (flight.leaseEnd = leaseEnd),
      onError: (error) => emit?.({ type: 'store_error', recordId, error }),
      beats,
    });
    const startedAt = Date.now();
    const untyped = call as HeldCall<unknown>;
    try {
      let value: T;
      try {
        value = await call.action({
          key: call.key,
          recordId,
          token,
          attempt,
          mayHaveRun: won.takeover,
          get signal() {
            if (!controller) {
              controller = new AbortController();
              if (lost) controller.abort(lost);
            }
            return controller.signal;
          },
          get downstreamKey() {
            return downstreamKeyOf(recordId); // computed only when the action asks for it
          },
        });
        heartbeat.settle();
      } catch (error) {
        heartbeat.settle();
        if (!isDefinitiveFailure(error, call.opts.definitive, definitive)) {
          await release(untyped, flight, token, heartbeat);
          throw error;
        }
        await complete(untyped, token, { kind: 'error', error: serializeError(error) }, undefined, error);
        emit?.({ type: 'completed', recordId, attempt, durationMs: Date.now() - startedAt, error: true });
        throw error;
      }

      let classifierError: unknown;
      const releaseIf = call.opts.releaseIf;
      if (releaseIf) {
        try {
          if (releaseIf(value)) {
            await release(untyped, flight, token, heartbeat);
            return value;
          }
        } catch (error) {
          classifierError = error; // a successful action is stored anyway: re-running it is worse
        }
      }
      let encoded: string;
      try {
        encoded = encodeOutcome({ kind: 'value', value });
      } catch (cause) {
        const error = new TypeError(`the action's result cannot be stored: ${(cause as Error).message}`);
        await complete(untyped, token, { kind: 'error', error: serializeError(error) }, value);
        throw error;
      }
      // a UTF-8 byte is at most 3 per UTF-16 unit: short outcomes need no count
      if (encoded.length * 3 > maxOutcomeBytes) {
        const bytes = Buffer.byteLength(encoded);
        if (bytes > maxOutcomeBytes) await tooLarge(untyped, token, bytes, maxOutcomeBytes, value);
      }
      await completeEncoded(untyped, token, encoded, value);
      emit?.({ type: 'completed', recordId, attempt, durationMs: Date.now() - startedAt });
      if (classifierError !== undefined) throw classifierError;
      return value;
    } finally {
      heartbeat.stop();
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

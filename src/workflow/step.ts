/**
 * One journaled step: claim its record (run + name + occurrence), replay a recorded outcome,
 * or run it under a heartbeat and record its outcome — every write fenced by the run.
 *
 * ```
 * fence ─ claim step ─┬─ completed, same input ─▶ replay (1 store call)
 *                     ├─ other input ─▶ DivergenceError
 *                     ├─ held by a live lease ─▶ wait (a frozen invocation's lease runs out) ─▶ take over
 *                     └─ acquired ─▶ run fn ─ fence ─ complete(token)
 * ```
 *
 * The fence: no step record is claimed or written unless this invocation still holds the run,
 * known from the monotonic clock since the last confirmed renewal, or else confirmed by one
 * renewal. When the fence fails after the step ran, nothing is written: the step stays in
 * progress, its lease runs out, and the run's new holder takes it over with `mayHaveRun`.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { DivergenceError, InProgressError, LeaseLostError, OutcomeTooLargeError } from '../core/errors.ts';
import { downstreamKeyOf, sameFingerprint } from '../core/keys.ts';
import { startHeartbeat } from '../core/lease.ts';
import {
  decodeOutcome,
  encodeOutcome,
  isDefinitiveFailure,
  reviveError,
  serializeError,
} from '../core/outcome.ts';
import type { Store, StoreRecord } from '../core/store.ts';
import { waitForTurn } from '../core/wait.ts';
import type { StepContext } from './ambient.ts';

/** What a step record's outcome holds: the value and when it was recorded. */
interface Recorded {
  t: number;
  v: unknown;
}

/** What the step holder needs from its run. */
export interface StepDeps {
  store: Store;
  runId: string;
  leaseMs: number;
  ttlMs: number;
  maxOutcomeBytes: number;
  runSignal: AbortSignal;
  /** Throws `LeaseLostError` unless this invocation still holds the run (or the run is over). */
  fence: () => Promise<void>;
  /** Aborted once the run's body settled: a step still in flight releases its record, records nothing. */
  runOver?: AbortSignal;
  definitive: Array<((error: unknown) => boolean) | undefined>;
}

/** One step occurrence to hold. */
export interface StepCall<T> {
  stepId: string;
  recordId: string;
  fingerprint: string;
  fn: (ctx: StepContext) => T | Promise<T>;
  /** Called once the step is ours, before fn runs (writes the run's step index). */
  onAcquired: () => Promise<void>;
}

/** The step's result and how it was obtained. */
export interface StepResult<T> {
  value: T;
  replayed: boolean;
  attempt: number;
}

const COMPLETE_RETRY_MS = [50, 150, 400];

/** Runs or replays one step. */
export async function holdStep<T>(d: StepDeps, call: StepCall<T>): Promise<StepResult<T>> {
  const { store, leaseMs } = d;
  await d.fence();
  const turn = await waitForTurn({
    store,
    recordId: call.recordId,
    // a step held by a frozen or crashed invocation frees up within one lease (plus slack)
    waitMs: leaseMs * 2 + 1000,
    claim: async () => {
      const token = randomUUID();
      const sentAt = performance.now();
      const result = await store.claim({
        id: call.recordId,
        fingerprint: call.fingerprint,
        leaseMs,
        ttlMs: d.ttlMs,
        token,
      });
      return { result, token, sentAt };
    },
    accept: (record) => {
      if (!sameFingerprint(record.fingerprint, call.fingerprint)) throw new DivergenceError(call.stepId);
      return record.state === 'completed';
    },
    onWait: () => {},
  });
  if (turn.kind === 'busy') {
    throw new InProgressError(turn.retryAfterMs, `step "${call.stepId}" is held by another invocation`);
  }
  if (turn.kind === 'completed') return replay<T>(turn.record);

  const { token, attempt } = turn;
  if (d.runOver?.aborted) {
    // the body settled while this step waited for its turn: the run is over, fn does not run
    await store.release(call.recordId, token).catch(() => false);
    throw d.runOver.reason;
  }
  const controller = new AbortController();
  const heartbeat = startHeartbeat({
    store,
    id: call.recordId,
    token,
    leaseMs,
    intervalMs: Math.max(10, leaseMs / 3),
    leaseEnd: turn.sentAt + leaseMs,
    controller,
    onRenew: () => {},
    onError: () => {},
  });
  try {
    const indexed = call.onAcquired();
    indexed.catch(() => {}); // awaited below; never an unhandled rejection meanwhile
    let value: T;
    try {
      value = await call.fn({
        runId: d.runId,
        stepId: call.stepId,
        attempt,
        mayHaveRun: turn.takeover,
        downstreamKey: downstreamKeyOf(call.recordId),
        signal: AbortSignal.any([controller.signal, d.runSignal]),
      });
    } catch (error) {
      heartbeat.settle();
      await fenced(); // lost the run: write nothing, the new holder decides
      if (!(error instanceof LeaseLostError) && isDefinitiveFailure(error, ...d.definitive)) {
        await complete(encodeOutcome({ kind: 'error', error: serializeError(error) }));
      } else {
        // a transient failure: the step may run again (attempt 1: the key is new again)
        await store.release(call.recordId, token).catch(() => false);
      }
      throw error;
    }
    heartbeat.settle();
    await indexed;
    await fenced();
    let encoded: string;
    try {
      encoded = encodeOutcome({ kind: 'value', value: { t: Date.now(), v: value } });
    } catch (cause) {
      // recorded as the step's failure, so a resumed run does not run it again to fail the same way
      const error = new TypeError(
        `step "${call.stepId}" returned a value that cannot be stored: ${(cause as Error).message}`,
      );
      await complete(encodeOutcome({ kind: 'error', error: serializeError(error) }));
      throw error;
    }
    const bytes = Buffer.byteLength(encoded);
    if (bytes > d.maxOutcomeBytes) {
      await complete(encodeOutcome({ kind: 'too_large', bytes, limit: d.maxOutcomeBytes }));
      throw new OutcomeTooLargeError(bytes, d.maxOutcomeBytes, value);
    }
    await complete(encoded);
    return { value, replayed: false, attempt };
  } finally {
    heartbeat.stop();
  }

  /** The fence; once the run is over the step, still ours, is released rather than left held. */
  async function fenced(): Promise<void> {
    try {
      await d.fence();
    } catch (error) {
      if (d.runOver?.aborted) await store.release(call.recordId, token).catch(() => false);
      throw error;
    }
  }

  async function complete(encoded: string, marker = false): Promise<void> {
    for (let i = 0; ; i++) {
      let ok: boolean;
      try {
        ok = await store.complete(call.recordId, token, encoded, d.ttlMs);
      } catch (error) {
        // The store refused the size (DynamoDB's item limit is below maxOutcomeBytes): record the
        // too-large marker instead, as the engine's holder does, so a resumed run does not run
        // the step again; a retry of the same bytes would only be refused again.
        if (error instanceof OutcomeTooLargeError && !marker) {
          await complete(encodeOutcome({ kind: 'too_large', bytes: error.bytes, limit: error.limit }), true);
          throw error;
        }
        const delay = COMPLETE_RETRY_MS[i];
        if (delay === undefined) throw error;
        await new Promise((r) => setTimeout(r, delay));
        continue;
      }
      if (!ok) {
        throw new LeaseLostError(
          `step "${call.stepId}" was taken over by another invocation before its outcome was recorded`,
        );
      }
      return;
    }
  }
}

/** A recorded outcome, as the step's caller gets it. */
function replay<T>(record: StoreRecord): StepResult<T> {
  const outcome = decodeOutcome(record.outcome ?? '');
  if (outcome.kind === 'error') throw reviveError(outcome.error);
  if (outcome.kind === 'too_large') throw new OutcomeTooLargeError(outcome.bytes, outcome.limit);
  return { value: (outcome.value as Recorded).v as T, replayed: true, attempt: record.attempt };
}

/** When a recorded step completed (undefined for errors and foreign records). */
export function completedAtOf(record: StoreRecord): number | undefined {
  try {
    const outcome = decodeOutcome(record.outcome ?? '');
    return outcome.kind === 'value' ? (outcome.value as Recorded).t : undefined;
  } catch {
    return undefined;
  }
}

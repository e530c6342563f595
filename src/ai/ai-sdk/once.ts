/**
 * One model call, run at most once per key: claimed in the idem store before it leaves, never
 * aborted by its caller (a timeout or abort leaves it running and recording), followed live by
 * every duplicate in this process from its first part, waited for by duplicates elsewhere.
 * The model-level twin of `../call.ts`, which does the same for HTTP requests.
 *
 * @module
 */
import type { Duration } from '../../core/duration.ts';
import type { Idem } from '../../core/engine.ts';
import { FingerprintMismatchError } from '../../core/errors.ts';
import { untilAborted } from '../respond.ts';
import { recordSafely, type Savings } from '../savings.ts';
import type { Usage } from '../usage.ts';
import type { KeyedCall } from './keys.ts';
import { LOST, type ModelOutcome } from './outcome.ts';
import type { PartsRecording } from './parts.ts';
import type { StreamPart } from './types.ts';

/** Where a call stands, as its callers see it. */
export type Head =
  | {
      kind: 'live';
      recording: PartsRecording<StreamPart>;
      headers: Record<string, string>;
      /** Settles when the outcome is stored (or storing failed). */
      stored: Promise<unknown>;
    }
  | { kind: 'done'; outcome: ModelOutcome; replayed: boolean }
  | { kind: 'error'; error: unknown };

/** Runs the call upstream: `signal` fires when the claim is lost; `live` shares a stream as it starts. */
export type Run = (
  signal: AbortSignal,
  live: (recording: PartsRecording<StreamPart>, headers: Record<string, string>) => void,
) => Promise<ModelOutcome>;

/** Per-call options of {@link callOnce}. */
export interface OnceOptions {
  waitTimeout: Duration;
  ttl?: Duration | undefined;
  lease?: Duration | undefined;
  /** The caller's signal: it ends the caller's wait, never the call. */
  signal?: AbortSignal | undefined;
  /** Where a suppressed duplicate is counted; undefined: nowhere. */
  savings?: Savings | undefined;
}

interface Pending {
  fingerprint: string;
  head: Promise<Head>;
  /** The stored outcome, once there is one: what a duplicate saved. */
  final: Promise<ModelOutcome | undefined>;
}

/** Calls in flight per idem instance: two instances behave like two processes. */
const inFlight = new WeakMap<Idem, Map<string, Pending>>();

/**
 * The head of `call` for this caller (and whether it is someone else's answer): the call in
 * flight in this process with its key, else the stored outcome, else `run` under a fresh claim.
 *
 * @example
 * const { head, replayed } = await callOnce(idem, keyed, (signal) => generate(signal), { waitTimeout: '10m' });
 */
export async function callOnce(
  idem: Idem,
  call: KeyedCall,
  run: Run,
  options: OnceOptions,
): Promise<{ head: Head; replayed: boolean }> {
  const calls = inFlight.get(idem) ?? new Map<string, Pending>();
  inFlight.set(idem, calls);
  const { recordId } = idem.ids(call.key, call.scope);
  const shared = calls.get(recordId);
  if (shared) {
    if (shared.fingerprint !== call.fingerprint) throw new FingerprintMismatchError();
    const head = await untilAborted(shared.head, options.signal);
    void shared.final.then((outcome) => countSaved(options.savings, call, recordId, outcome));
    return { head, replayed: true };
  }

  let settle!: (head: Head) => void;
  let settleFinal!: (outcome: ModelOutcome | undefined) => void;
  const entry: Pending = {
    fingerprint: call.fingerprint,
    head: new Promise<Head>((resolve) => (settle = resolve)),
    final: new Promise((resolve) => (settleFinal = resolve)),
  };
  calls.set(recordId, entry);
  let stored!: () => void;
  const isStored = new Promise<void>((resolve) => (stored = resolve));
  const finish = (head: Head) => {
    stored();
    if (calls.get(recordId) === entry) calls.delete(recordId);
    settle(head);
  };
  idem
    .execute<ModelOutcome>(
      call.key,
      // a holder before us died mid-call: the provider may have billed it, so it is not sent again
      (ctx) =>
        ctx.mayHaveRun
          ? LOST
          : run(ctx.signal, (recording, headers) =>
              settle({ kind: 'live', recording, headers, stored: isStored }),
            ),
      {
        fingerprint: call.fingerprint,
        scope: call.scope,
        onInProgress: 'wait',
        waitTimeout: options.waitTimeout,
        ...(options.ttl !== undefined && { ttl: options.ttl }),
        ...(options.lease !== undefined && { lease: options.lease }),
        releaseIf: (outcome) => outcome.kind === 'stream' && outcome.unbilled === true,
      },
    )
    .then(
      (r) => {
        settleFinal(r.value);
        finish({ kind: 'done', outcome: r.value, replayed: r.replayed });
        if (r.replayed) countSaved(options.savings, call, recordId, r.value);
      },
      (error: unknown) => {
        settleFinal(undefined);
        finish({ kind: 'error', error });
      },
    );
  const head = await untilAborted(entry.head, options.signal);
  return { head, replayed: head.kind === 'done' && head.replayed };
}

/**
 * Counts a duplicate answered from `outcome` into `savings` (default the process tracker:
 * `savingsReport()`, OpenTelemetry), guarded: the usage of a generated answer or of a complete stream's finish part.
 */
function countSaved(
  savings: Savings | undefined,
  call: KeyedCall,
  id: string,
  outcome: ModelOutcome | undefined,
): void {
  let usage: unknown;
  if (outcome?.kind === 'generate') usage = outcome.result.usage;
  else if (outcome?.kind === 'stream' && outcome.complete)
    usage = (outcome.parts.find((p) => p.type === 'finish') as { usage?: unknown } | undefined)?.usage;
  else return;
  recordSafely(savings, {
    provider: call.model.provider,
    id,
    model: call.model.modelId,
    usage: usage as Usage | undefined,
  });
}

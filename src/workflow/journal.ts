/**
 * The run journal: `idem.workflow(runKey, body)` and `idem.runs.get(runKey)`.
 *
 * ```
 * workflow(runKey, body)
 *   engine.execute(runKey)          the run is one record: claimed, leased, fenced by its token;
 *     completed run ─▶ its stored result, body not run
 *     body(run) inside withActiveRun(run)
 *       run.step(name, fn)          a record per run + name + occurrence (step.ts)
 *         first execution also claims the run's step index slot n (names name#occurrence)
 * ```
 *
 * Built on the Store contract only, so it works on every store. A replayed step costs one
 * store call (the claim that finds it completed); a completed run costs one call in all.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import type { OutcomeCodec } from '../core/encryption.ts';
import { InvalidKeyError, InvalidOptionError, LeaseLostError } from '../core/errors.ts';
import { fingerprintOf, recordIdOf, scopeParts, validateKey } from '../core/keys.ts';
import { nearestName } from '../core/names.ts';
import { resolveRunOptions } from '../core/options.ts';
import { decodeOutcome } from '../core/outcome.ts';
import type { Store, StoreRecord } from '../core/store.ts';
import { type StepContext, type StepOptions, withActiveRun } from './ambient.ts';
import { completedAtOf, holdStep } from './step.ts';
import { txStep } from './tx/index.ts';
import type {
  RunInfo,
  RunStep,
  Runs,
  StepInfo,
  WorkflowBody,
  WorkflowOptions,
  WorkflowRun,
} from './types.ts';

/** The engine pieces the journal runs on (structural, so the journal never imports the engine). */
export interface JournalDeps {
  store: Store;
  scope: readonly string[];
  ttlMs: number;
  leaseMs: number;
  maxOutcomeBytes: number;
  definitive?: ((error: unknown) => boolean) | undefined;
  /** Seals `run.tx` rows like the store's outcomes (encryption at rest, or none). */
  codec: OutcomeCodec;
  execute<T>(
    key: string,
    action: (ctx: {
      recordId: string;
      token: string;
      attempt: number;
      mayHaveRun: boolean;
      signal: AbortSignal;
    }) => Promise<T>,
    options: Record<string, unknown>,
  ): Promise<{ value: T }>;
}

const KNOWN = ['input', 'exclude', 'scope', 'ttl', 'lease', 'onInProgress', 'waitTimeout', 'definitive'];
const STEP_KNOWN = ['input'];
const TX_KNOWN = ['input', 'table'];
const MAX_STEP_NAME = 200;
/** How far past its own slot a step looks for a free one (steps started in another order). */
const SLOT_PROBE = 64;
/** Slot records are never completed: their lease only has to be valid. */
const SLOT_LEASE_MS = 1000;
/** How many index slots `runs.get` reads at once. */
const GET_BATCH = 32;

/** A slot record's fingerprint, parsed. */
function slotEntry(fingerprint: string) {
  const m = /^wf1:(\d+):(.*)#(\d+)$/.exec(fingerprint);
  if (!m) return undefined;
  return { startedAt: Number(m[1]), name: m[2]!, occurrence: Number(m[3]), stepId: `${m[2]}#${m[3]}` };
}

/**
 * Builds `workflow` and `runs` for one idem instance.
 *
 * @example
 * const { workflow, runs } = createJournal({ store, scope: [], ttlMs, leaseMs, maxOutcomeBytes, execute });
 */
export function createJournal(deps: JournalDeps) {
  const { store } = deps;
  const stepScope = (scope: readonly string[], runKey: string) => [...scope, 'idem.workflow.step', runKey];
  const slotScope = (scope: readonly string[], runKey: string) => [...scope, 'idem.workflow.slot', runKey];

  async function workflow<T>(
    runKey: string,
    body: WorkflowBody<T>,
    options: WorkflowOptions = {},
  ): Promise<T> {
    validateKey(runKey, 'run key');
    if (typeof body !== 'function') throw new InvalidOptionError('workflow body must be a function');
    checkKnown(options);
    const own = resolveRunOptions(options as Parameters<typeof resolveRunOptions>[0], 'workflow');
    const leaseMs = own.leaseMs ?? deps.leaseMs;
    const ttlMs = own.ttlMs ?? deps.ttlMs;
    const scope = [...deps.scope, ...scopeParts(options.scope)];
    const exclude = options.exclude ?? [];
    const runOpts: Record<string, unknown> = {
      ...options,
      scope: [...scopeParts(options.scope), 'idem.workflow'],
    };
    // measured before the claim is sent: the run's lease surely lasts until this + leaseMs
    const claimSentBefore = performance.now();
    const { value } = await deps.execute<T>(
      runKey,
      async (ctx) => {
        let leaseEnd = claimSentBefore + leaseMs;
        // aborted once the body settled: the run is over, its steps write nothing more
        const over = new AbortController();
        const fence = async () => {
          if (over.signal.aborted) throw over.signal.reason;
          if (ctx.signal.aborted) throw ctx.signal.reason;
          if (performance.now() < leaseEnd - leaseMs / 2) return;
          const sentAt = performance.now();
          const until = await store.renew(ctx.recordId, ctx.token, leaseMs);
          if (until === undefined) {
            throw new LeaseLostError(
              `run "${runKey}" was taken over by another invocation: this invocation writes nothing more`,
            );
          }
          leaseEnd = sentAt + leaseMs;
        };
        const occurrences = new Map<string, number>();
        const steps: RunStep[] = [];
        let slots = 0;
        const stepDeps = {
          store,
          runId: runKey,
          leaseMs,
          ttlMs,
          maxOutcomeBytes: deps.maxOutcomeBytes,
          runSignal: AbortSignal.any([ctx.signal, over.signal]),
          runOver: over.signal,
          fence,
          definitive: [options.definitive, deps.definitive],
        };
        const step = async <S>(
          name: string,
          fn: (c: StepContext) => S | Promise<S>,
          opts: StepOptions = {},
        ) => {
          if (over.signal.aborted) throw over.signal.reason;
          checkStepName(name);
          if (typeof fn !== 'function') throw new InvalidOptionError(`step "${name}": fn must be a function`);
          checkKnown(opts, STEP_KNOWN, 'step');
          // numbered synchronously, in call order, so parallel steps number deterministically
          const occurrence = (occurrences.get(name) ?? 0) + 1;
          occurrences.set(name, occurrence);
          const slot = ++slots;
          const stepId = `${name}#${occurrence}`;
          const fingerprint = opts.input === undefined ? '' : fingerprintOf(opts.input, exclude);
          const recordId = recordIdOf(stepScope(scope, runKey), stepId);
          const result = await holdStep(stepDeps, {
            stepId,
            recordId,
            fingerprint,
            fn,
            onAcquired: () => writeSlot(scope, runKey, slot, stepId, ttlMs),
          });
          steps.push({ name, occurrence, stepId, replayed: result.replayed, attempt: result.attempt });
          return result.value;
        };
        const run: WorkflowRun = {
          id: runKey,
          attempt: ctx.attempt,
          mayHaveRun: ctx.mayHaveRun,
          signal: ctx.signal,
          steps,
          step,
          tx: (name, client, fn, opts = {}) => {
            if (over.signal.aborted) return Promise.reject(over.signal.reason);
            checkKnown(opts, TX_KNOWN, 'run.tx');
            const tx = (c: StepContext) =>
              txStep(client, c, () => fn(client, c), opts.table, fence, deps.codec);
            return step(name, tx, { input: opts.input });
          },
        };
        try {
          return await withActiveRun(run, () => body(run));
        } finally {
          over.abort(
            new InvalidOptionError(
              `run "${runKey}" is over (its body settled): run.step and run.tx must be awaited inside the body; nothing was run or recorded`,
            ),
          );
        }
      },
      runOpts,
    );
    return value;
  }

  /**
   * Writes slot n of the run's step index: one claim, never completed, whose fingerprint names
   * the step (`wf1:<startedAt>:<name>#<occurrence>`), kept for the run's ttl. First writer wins;
   * a slot taken by another step (steps started in another order) sends us to the next one.
   */
  async function writeSlot(
    scope: readonly string[],
    runKey: string,
    slot: number,
    stepId: string,
    ttlMs: number,
  ): Promise<void> {
    const fingerprint = `wf1:${Date.now()}:${stepId}`;
    for (let n = slot; n < slot + SLOT_PROBE; n++) {
      const id = recordIdOf(slotScope(scope, runKey), String(n));
      const r = await store.claim({ id, fingerprint, leaseMs: SLOT_LEASE_MS, ttlMs, token: randomUUID() });
      if (r.status === 'acquired') return;
      if (slotEntry(r.record.fingerprint)?.stepId === stepId) return; // written by an earlier attempt
    }
  }

  const runs: Runs = {
    async get(runKey, options = {}) {
      validateKey(runKey, 'run key');
      const scope = [...deps.scope, ...scopeParts(options.scope)];
      const record = await store.get(recordIdOf([...scope, 'idem.workflow'], runKey));
      const now = Date.now();
      let status: RunInfo['status'] = 'absent';
      if (record?.state === 'completed') status = outcomeStatus(record.outcome);
      else if (record?.token === '') status = 'released';
      else if (record) status = record.leaseUntil > now ? 'running' : 'interrupted';
      const steps: StepInfo[] = [];
      // the index is read in batches of GET_BATCH slots (each slot then its step), until a gap
      for (let from = 1; ; from += GET_BATCH) {
        const batch = await Promise.all(
          Array.from({ length: GET_BATCH }, async (_, k) => {
            const slot = await store.get(recordIdOf(slotScope(scope, runKey), String(from + k)));
            const entry = slot && slotEntry(slot.fingerprint);
            if (!entry) return undefined;
            const s = await store.get(recordIdOf(stepScope(scope, runKey), entry.stepId));
            return {
              name: entry.name,
              occurrence: entry.occurrence,
              stepId: entry.stepId,
              status: stepStatus(s, now),
              attempts: s?.attempt ?? 0,
              startedAt: entry.startedAt,
              completedAt: s?.state === 'completed' ? completedAtOf(s) : undefined,
            } satisfies StepInfo;
          }),
        );
        const gap = batch.indexOf(undefined);
        steps.push(...(batch.slice(0, gap === -1 ? undefined : gap) as StepInfo[]));
        if (gap !== -1) break;
      }
      // a released marker stores attempt 0: the invocation that released it was attempt 1
      const attempt = record ? Math.max(1, record.attempt) : 0;
      return { runKey, status, attempt, steps };
    },
  };

  return { workflow, runs };
}

function stepStatus(s: StoreRecord | undefined, now: number): StepInfo['status'] {
  if (!s) return 'released';
  if (s.state === 'completed') return completedAtOf(s) === undefined ? 'failed' : 'completed';
  return s.token !== '' && s.leaseUntil > now ? 'running' : 'interrupted';
}

function outcomeStatus(outcome: string | undefined): RunInfo['status'] {
  try {
    return decodeOutcome(outcome ?? '').kind === 'value' ? 'completed' : 'failed';
  } catch {
    return 'failed';
  }
}

function checkKnown(options: object, known = KNOWN, what = 'workflow'): void {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError(`${what} options must be an object`);
  }
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) {
      const near = nearestName(name, known);
      throw new InvalidOptionError(
        `unknown ${what} option ${name}${near ? ` — did you mean ${near}?` : ` (known: ${known.join(', ')})`}`,
      );
    }
  }
}

function checkStepName(name: unknown): void {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > MAX_STEP_NAME ||
    !/^[\x20-\x7e]+$/.test(name)
  ) {
    throw new InvalidKeyError(
      `step name must be 1-${MAX_STEP_NAME} printable ASCII characters, got ${JSON.stringify(name)}`,
    );
  }
}

/**
 * The workflow run the current async context belongs to, if any. `idem.workflow` sets it while
 * its body runs, so integrations (AI SDK tools, MCP tool handlers) called inside a run record
 * their effects as steps of that run's journal instead of keying them on their own.
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * What a step's function receives.
 *
 * @example
 * await run.step('pay', (ctx) => payments.post(claim, { idempotencyKey: ctx.downstreamKey }));
 */
export interface StepContext {
  /** The run's key. */
  runId: string;
  /** `name#occurrence`, unique within the run. */
  stepId: string;
  /** 1 the first time this step occurrence executes; +1 each time a crashed attempt is retried. */
  attempt: number;
  /** True when an earlier attempt of this step started and did not record an outcome. */
  mayHaveRun: boolean;
  /** Stable per run + step occurrence: pass it to external APIs as their idempotency key. */
  downstreamKey: string;
  /** Aborts when this invocation loses the run (another invocation took it over). */
  signal: AbortSignal;
}

/**
 * Options of one step.
 *
 * @example
 * await run.step('charge', charge, { input: { amount: 42 } });
 */
export interface StepOptions {
  /** The step's input: its fingerprint is stored, and a different input later raises `DivergenceError`. */
  input?: unknown;
}

/**
 * The part of a workflow run that integrations need: running a function as a journaled step.
 *
 * @example
 * const run = activeRun();
 * const out = run ? await run.step(`tool:${name}`, () => execute(args), { input: args }) : await execute(args);
 */
export interface AmbientRun {
  readonly id: string;
  step<T>(name: string, fn: (ctx: StepContext) => T | Promise<T>, options?: StepOptions): Promise<T>;
}

const storage = new AsyncLocalStorage<AmbientRun>();

/**
 * The workflow run the caller is inside, or undefined outside any `idem.workflow` body.
 *
 * @example
 * const run = activeRun();
 */
export function activeRun(): AmbientRun | undefined {
  return storage.getStore();
}

/**
 * Runs `fn` with `run` as the active run (used by `idem.workflow`).
 *
 * @example
 * await withActiveRun(run, () => body(run));
 */
export function withActiveRun<T>(run: AmbientRun, fn: () => T): T {
  return storage.run(run, fn);
}

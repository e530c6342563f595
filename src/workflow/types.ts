/**
 * The run journal's public types: what `idem.workflow` takes and gives, and what
 * `idem.runs.get` answers. Kept apart from the core's types so the core only names them.
 *
 * @module
 */
import type { Duration } from '../core/duration.ts';
import type { InProgressPolicy } from '../core/options.ts';
import type { AmbientRun, StepContext, StepOptions } from './ambient.ts';
import type { TxClient } from './tx/index.ts';

/**
 * Options of one workflow invocation (checked where they enter; unknown names are refused).
 *
 * @example
 * await idem.workflow('claim:42', body, { input: claim, lease: '30s', onInProgress: 'wait' });
 */
export interface WorkflowOptions {
  /** The run's input: a later invocation of the same run key with another input is a `FingerprintMismatchError`. */
  input?: unknown;
  /** Dot paths left out of the run's (and its steps') input fingerprints. */
  exclude?: readonly string[];
  /** Scope parts added to the instance scope, for the run and all its steps. */
  scope?: string | readonly string[];
  /** How long the run's result and its steps are kept. Default: the instance's `ttl`. */
  ttl?: Duration;
  /** The run's lease (renewed while the body runs) and each step's. Default: the instance's `lease`. */
  lease?: Duration;
  /** Another invocation holds the run: `'reject'` (InProgressError) or `'wait'` for its result. */
  onInProgress?: InProgressPolicy;
  waitTimeout?: Duration;
  /** Errors for which this returns true are stored (for the step that threw, and for the run) instead of retried. */
  definitive?: (error: unknown) => boolean;
}

/**
 * One step as this invocation saw it.
 *
 * @example
 * for (const s of run.steps) console.log(s.stepId, s.replayed ? 'replayed' : `ran (attempt ${s.attempt})`);
 */
export interface RunStep {
  name: string;
  occurrence: number;
  /** `name#occurrence`. */
  stepId: string;
  /** True when the recorded outcome was returned without running the step. */
  replayed: boolean;
  /** The step's attempt as recorded (1, +1 per takeover of a crashed attempt). */
  attempt: number;
}

/**
 * What a workflow body receives.
 *
 * @example
 * await idem.workflow('order:42', async (run) => {
 *   const quote = await run.step('quote', () => pricing.quote(order));
 *   await run.step('charge', (ctx) => stripe.charge(quote, { idempotencyKey: ctx.downstreamKey }));
 * });
 */
export interface WorkflowRun extends AmbientRun {
  /** The run key. */
  readonly id: string;
  /** 1 for the first holder of the run, +1 each time a crashed invocation is taken over. */
  readonly attempt: number;
  /** True when an earlier invocation of this run held it and lost it mid-run (crash, freeze). */
  readonly mayHaveRun: boolean;
  /** Aborts with `LeaseLostError` when another invocation takes the run over. */
  readonly signal: AbortSignal;
  /** The steps this invocation ran or replayed, in call order. */
  readonly steps: readonly RunStep[];
  /**
   * Runs `fn` once per run + `name` + occurrence: a recorded step returns its outcome without
   * running; a step whose input changed throws `DivergenceError`. Once the body settled the
   * run is over: this throws `InvalidOptionError` without running `fn` (await every step).
   */
  step<T>(name: string, fn: (ctx: StepContext) => T | Promise<T>, options?: StepOptions): Promise<T>;
  /**
   * A database step: `fn(client)` runs inside a transaction on `client` (a `pg` client or a
   * `node:sqlite` `DatabaseSync`) whose commit also records the step: the effect and its record
   * commit together, so the effect happens exactly once. A client already inside a
   * transaction is refused with `InvalidOptionError` (its transaction is left untouched).
   */
  tx<C extends TxClient, T>(
    name: string,
    client: C,
    fn: (client: C, ctx: StepContext) => T | Promise<T>,
    options?: TxOptions,
  ): Promise<T>;
}

/**
 * Options of `run.tx`.
 *
 * @example
 * await run.tx('debit', pgClient, (c) => c.query('UPDATE accounts SET balance = balance - 5'), { input: 5 });
 */
export interface TxOptions extends StepOptions {
  /** The journal table in the client's database. Default `idem_journal_tx` (Postgres: in the search path). */
  table?: string;
}

/**
 * A step's state as stored. `interrupted`: started, its lease ran out with no outcome recorded
 * (the next holder takes it over with `mayHaveRun`); `released`: it threw a transient error and
 * runs again on the next invocation; `failed`: a definitive error is its recorded outcome.
 */
export type StepStatus = 'running' | 'interrupted' | 'released' | 'completed' | 'failed';

/**
 * A step as `idem.runs.get` reports it.
 *
 * @example
 * const { steps } = await idem.runs.get('claim:42');
 */
export interface StepInfo {
  name: string;
  occurrence: number;
  stepId: string;
  status: StepStatus;
  /** Attempts that started (1 + takeovers); 0 for a step released after a transient error. */
  attempts: number;
  /** When the step first started (epoch ms, application clock). */
  startedAt: number;
  /** When its outcome was recorded (completed steps; application clock). */
  completedAt?: number | undefined;
}

/**
 * A run as `idem.runs.get` reports it.
 *
 * @example
 * const info = await idem.runs.get('claim:42'); // { status: 'completed', attempt: 2, steps: [...] }
 */
export interface RunInfo {
  runKey: string;
  /**
   * `absent`: no record (never run, or expired); `released`: the body threw a transient error
   * (the next invocation resumes it); `interrupted`: its holder's lease ran out mid-run.
   */
  status: 'absent' | 'running' | 'interrupted' | 'released' | 'completed' | 'failed';
  /** The attempt of the invocation that holds or last held the run (1 + takeovers); 0 when absent. */
  attempt: number;
  steps: StepInfo[];
}

/**
 * `idem.runs`: inspecting runs.
 *
 * @example
 * const info = await idem.runs.get('claim:42', { scope: 'tenant-7' });
 */
export interface Runs {
  get(runKey: string, options?: { scope?: string | readonly string[] }): Promise<RunInfo>;
}

/** The body of a workflow. */
export type WorkflowBody<T> = (run: WorkflowRun) => T | Promise<T>;

/**
 * The run journal: `idem.workflow(runKey, body)`, `run.step`, `run.tx`, `idem.runs.get`.
 *
 * @example
 * await idem.workflow('claim:42', async (run) => {
 *   const intake = await run.step('intake', () => normalize(pdf));
 *   await run.step('pay', (ctx) => pay(intake, ctx.downstreamKey), { input: intake });
 * });
 *
 * @module
 */
export type { AmbientRun, StepContext, StepOptions } from './ambient.ts';
export { activeRun, withActiveRun } from './ambient.ts';
export { createJournal, type JournalDeps } from './journal.ts';
export type { PgTxClient, SqliteTxClient, TxClient } from './tx/index.ts';
export type {
  RunInfo,
  RunStep,
  Runs,
  StepInfo,
  StepStatus,
  TxOptions,
  WorkflowBody,
  WorkflowOptions,
  WorkflowRun,
} from './types.ts';

/**
 * idem: make side effects happen once.
 *
 * @example
 * import { createIdem, memoryStore } from 'idem';
 * const idem = createIdem({ store: memoryStore() });
 * const id = await idem.run('send-welcome:user-42', () => mailer.send(welcome));
 *
 * @module
 */
export {
  COUNTER_NAMES,
  type CounterBatch,
  type CounterName,
  type CounterTotals,
  type RecordCounts,
  type StoreCounters,
} from './core/counters.ts';
export type { Duration } from './core/duration.ts';
export { toMs } from './core/duration.ts';
export type { EncryptionOptions } from './core/encryption.ts';
export type {
  Action,
  ActionContext,
  ExecuteResult,
  Idem,
  IdemOptions,
  InProgressPolicy,
  RunOptions,
} from './core/engine.ts';
export { createIdem } from './core/engine.ts';
export * from './core/errors.ts';
export type { IdemEvent } from './core/events.ts';
export type {
  ConsumeContext,
  ConsumeHandler,
  ConsumeNext,
  ConsumeOptions,
  ConsumeResult,
  MessageRef,
} from './core/inbox.ts';
export { parseJsonExact } from './core/json.ts';
export {
  canonicalJson,
  deriveKey,
  fingerprintOf,
  MAX_INPUT_DEPTH,
  MAX_KEY_LENGTH,
  validateKey,
} from './core/keys.ts';
export {
  type ResolvedRunOptions,
  type RunOptionsInput,
  resolveRunOptions,
} from './core/options.ts';
export { definitive, isDefinitive } from './core/outcome.ts';
export type { ReplayCacheOptions } from './core/replay-cache.ts';
export {
  createStatsRecorder,
  type SavedCall,
  type StatsRecorder,
  type StatsRecorderOptions,
} from './core/stats-recorder.ts';
export type { ClaimRequest, ClaimResult, Store, StoreRecord } from './core/store.ts';
export { type MemoryStoreOptions, memoryStore } from './stores/memory/index.ts';
export {
  type AmbientRun,
  activeRun,
  type RunInfo,
  type RunStep,
  type Runs,
  type StepContext,
  type StepInfo,
  type StepOptions,
  type StepStatus,
  type TxClient,
  type TxOptions,
  type WorkflowBody,
  type WorkflowOptions,
  type WorkflowRun,
  withActiveRun,
} from './workflow/index.ts';

/**
 * The store conformance suite. Every idem store passes it, and so should yours:
 *
 * ```ts
 * // my-store.test.ts (vitest)
 * import { testStore } from 'idem/testing';
 * testStore({
 *   name: 'my-store',
 *   create: () => myStore({ url: process.env.MY_URL }),
 *   processStore: { module: new URL('./my-store-factory.ts', import.meta.url).pathname },
 * });
 * ```
 *
 * It checks the store contract directly (atomic claim, fencing, leases, retention), the
 * engine rules on top of it (replay, mismatch, waiting, takeover, failure policy, exact
 * outcomes), and, with `processStore`, real races between OS processes and a SIGKILLed holder.
 * `raceProcesses()` runs a bigger race of your own size inside any test.
 *
 * @module
 */
import { afterAll, beforeAll, describe } from 'vitest';
import type { Store } from '../core/store.ts';
import { contractTests } from './contract.ts';
import { engineTests } from './engine.ts';
import { processTests } from './processes.ts';
import type { SuiteEnv } from './suite-env.ts';

export { type RaceOptions, type RaceReport, raceProcesses } from './processes.ts';
export type { SuiteEnv } from './suite-env.ts';

/** Options of {@link testStore}. */
export interface TestStoreOptions {
  /** Shown in the test names. */
  name: string;
  /** Builds the store under test; called once per suite. */
  create: () => Store | Promise<Store>;
  /** Cleans up after the suite (drop a schema, delete a key prefix). Called after `close`. */
  destroy?: (store: Store) => void | Promise<void>;
  /**
   * Enables the multi-process tests: an absolute path to a module exporting
   * `createStore(arg): Store | Promise<Store>`, loaded in each child process.
   */
  processStore?: { module: string; arg?: unknown };
  /** Child processes in the race test. Default 8. */
  processes?: number;
  /** Short lease used by the expiry tests, in ms. Default 300. */
  leaseMs?: number;
  /**
   * The store deletes expired records on its own (Redis key expiry), so `purgeExpired` finds
   * nothing to delete. Otherwise the suite requires it to delete expired records.
   */
  selfExpiring?: boolean;
  /**
   * The longest outcome (UTF-8 bytes) the store keeps, for stores with an item size limit
   * (DynamoDB). The exact-outcome test then stores one that size instead of 2 MiB, and the
   * 2 MiB one must reject with `OutcomeTooLargeError`, leaving the record in progress.
   */
  maxOutcomeBytes?: number;
}

/**
 * Registers the conformance suite for one store in the current vitest file.
 *
 * @example
 * import { memoryStore } from 'idem';
 * import { testStore } from 'idem/testing';
 * testStore({ name: 'memory', create: () => memoryStore() });
 */
export function testStore(options: TestStoreOptions): void {
  describe(`store conformance: ${options.name}`, () => {
    const env = storeEnv(options);
    contractTests(env);
    engineTests(env);
    if (options.processStore) processTests(env, options.processStore, options.processes ?? 8);
  });
}

function storeEnv(options: TestStoreOptions): SuiteEnv {
  let store: Store | undefined;
  beforeAll(async () => {
    store = await options.create();
  });
  afterAll(async () => {
    if (!store) return;
    await store.close?.();
    await options.destroy?.(store);
  });
  return {
    name: options.name,
    leaseMs: options.leaseMs ?? 300,
    selfExpiring: options.selfExpiring ?? false,
    maxOutcomeBytes: options.maxOutcomeBytes,
    create: options.create,
    store: () => {
      if (!store) throw new Error('store not created yet');
      return store;
    },
  };
}

/**
 * What the parts of the conformance suite (contract, engine and process tests) share. Its own
 * module so that the parts do not import `index.ts`, which imports them (no import cycle).
 *
 * @module
 */
import type { Store } from '../core/store.ts';

/**
 * The store under test and the suite's settings, as `testStore()` hands them to each part.
 *
 * @example
 * function myTests(env: SuiteEnv) {
 *   it('answers', async () => expect(await env.store().get('k')).toBeUndefined());
 * }
 */
export interface SuiteEnv {
  store: () => Store;
  /** A second, fresh store from `create`, for tests that close it; closed by the test. */
  create: () => Store | Promise<Store>;
  leaseMs: number;
  name: string;
  /** The store deletes expired records by itself (Redis TTLs): purge may find nothing. */
  selfExpiring: boolean;
  /** The longest outcome the store keeps (an item size limit); undefined: 2 MiB and more. */
  maxOutcomeBytes?: number | undefined;
}

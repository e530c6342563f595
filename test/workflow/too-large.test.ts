/**
 * A step whose value the store refuses as too large (DynamoDB's 400 KB item limit is below the
 * default maxOutcomeBytes) is recorded as too large, like a plain key: a resumed run replays the
 * OutcomeTooLargeError and does not run the step again.
 */
import { createIdem, memoryStore, OutcomeTooLargeError, type Store } from 'idem';
import { describe, expect, it } from 'vitest';

/** A memory store that refuses outcomes over `limit` characters, as a size-limited backend does. */
function sizeLimited(limit: number): Store {
  const store = memoryStore();
  return {
    ...store,
    async complete(id, token, outcome, ttlMs) {
      if (outcome.length > limit) throw new OutcomeTooLargeError(outcome.length, limit);
      return store.complete(id, token, outcome, ttlMs);
    },
  };
}

describe('workflow: a step value the store refuses as too large', () => {
  it('is recorded as too large: the resumed run replays the error without running the step', async () => {
    const idem = createIdem({ store: sizeLimited(2000), lease: '5s' });
    let runs = 0;
    const body = async (run: { step<T>(name: string, fn: () => T): Promise<T> }) =>
      run.step('big', () => {
        runs++;
        return 'x'.repeat(10_000);
      });
    const first = await idem.workflow('run-big', body).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(OutcomeTooLargeError);
    const again = await idem.workflow('run-big', body).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(OutcomeTooLargeError);
    expect(runs).toBe(1);
  });
});

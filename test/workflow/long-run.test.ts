/**
 * 1,000-step runs on every store (IDEM_JOURNAL_STEPS for more): each step executes once, and the resume replays all of them
 * with one store call each. Its own file, so it runs beside the other journal tests.
 */
import { createIdem } from 'idem';
import { describe, expect, it } from 'vitest';
import { counting, rk, STORES } from './fixtures/stores.ts';

class Transient extends Error {}
/** 1,000 in `npm test`; IDEM_JOURNAL_STEPS=10000 (or more) for a longer run. */
const N = Number(process.env.IDEM_JOURNAL_STEPS ?? 1000);

// One store at a time. Run side by side, the Redis run timed out a claim after 2 s in two CI runs
// (not alone): node:sqlite answers synchronously, so a 1,000-step SQLite run is one long chain of
// microtasks holding this process's event loop, which is the likely cause.
describe.each(STORES)('a long run on %s', (_name, makeStore) => {
  it(`a ${N}-step run: every step once; the resume replays all of them with one claim each`, async () => {
    const c = counting(makeStore());
    const idem = createIdem({ store: c.store, lease: '10s' });
    const effects = new Map<string, number>();
    let crash = true;
    const body = async (run: import('idem').WorkflowRun) => {
      let sum = 0;
      for (let i = 0; i < N; i++) {
        sum += await run.step('n', (ctx) => {
          effects.set(ctx.stepId, (effects.get(ctx.stepId) ?? 0) + 1);
          return i;
        });
      }
      if (crash) throw new Transient('crash after the last step');
      return sum;
    };
    await expect(idem.workflow(rk('k1000'), body)).rejects.toThrow('crash');
    crash = false;
    c.reset();
    expect(await idem.workflow(rk('k1000'), body)).toBe((N * (N - 1)) / 2);
    expect(effects.size).toBe(N);
    expect([...effects.values()].every((n) => n === 1)).toBe(true);
    expect(c.calls.claim).toBe(N + 1);
    expect((await idem.runs.get(rk('k1000'))).steps).toHaveLength(N);
    await idem.close();
  });
});

/**
 * 1,000-step runs on every store: each step executes once, and the resume replays all of them
 * with one store call each. Its own file, so it runs beside the other journal tests.
 */
import { createIdem } from 'idem';
import { describe, expect, it } from 'vitest';
import { counting, rk, STORES } from './fixtures/stores.ts';

class Transient extends Error {}

describe.each(STORES)('a long run on %s', (_name, makeStore) => {
  it('a 1,000-step run: every step once; the resume replays all 1,000 with one claim each', async () => {
    const c = counting(makeStore());
    const idem = createIdem({ store: c.store, lease: '10s' });
    const effects = new Map<string, number>();
    let crash = true;
    const body = async (run: import('idem').WorkflowRun) => {
      let sum = 0;
      for (let i = 0; i < 1000; i++) {
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
    expect(await idem.workflow(rk('k1000'), body)).toBe(499_500);
    expect(effects.size).toBe(1000);
    expect([...effects.values()].every((n) => n === 1)).toBe(true);
    expect(c.calls.claim).toBe(1001);
    expect((await idem.runs.get(rk('k1000'))).steps).toHaveLength(1000);
    await idem.close();
  });
});

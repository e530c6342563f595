/**
 * The holder's own view of its lease must not follow the wall clock: an NTP step or a manual
 * change of the clock (backwards or forwards) while an action runs must neither keep the
 * signal quiet past the real lease end nor abort a lease the store keeps renewing.
 */
import { createIdem, memoryStore, type Store } from 'idem';
import { afterEach, expect, it } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const realNow = Date.now;
let skew = 0;
/** Moves this process's wall clock by `ms` (the store keeps its own clock). */
const jumpClock = (ms: number) => {
  skew += ms;
  Date.now = () => realNow() + skew;
};
afterEach(() => {
  Date.now = realNow;
  skew = 0;
});

it('a clock stepped back while renewals hang still aborts the signal at the real lease end', async () => {
  const base = memoryStore({ now: realNow });
  const store: Store = { ...base, renew: () => new Promise(() => {}) }; // the store stopped answering
  const idem = createIdem({ store, lease: 300 });
  let abortedAfter = -1;
  await idem
    .run('k', async (ctx) => {
      const started = performance.now();
      jumpClock(-10_000);
      await Promise.race([
        new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)),
        sleep(3_000),
      ]);
      if (ctx.signal.aborted) abortedAfter = performance.now() - started;
      return 'v';
    })
    .catch(() => {});
  expect(abortedAfter).toBeGreaterThan(0);
  expect(abortedAfter).toBeLessThan(1_500);
});

it('a clock stepped back while the winning claim travels still aborts the signal at the real lease end', async () => {
  const base = memoryStore({ now: realNow });
  const store: Store = {
    ...base,
    claim: async (req) => {
      const answer = await base.claim(req);
      jumpClock(-10_000); // stepped while the answer was on its way
      await sleep(20);
      return answer;
    },
    renew: () => new Promise(() => {}), // the store stopped answering
  };
  const idem = createIdem({ store, lease: 300 });
  let abortedAfter = -1;
  await idem
    .run('k', async (ctx) => {
      const started = performance.now();
      await Promise.race([
        new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)),
        sleep(3_000),
      ]);
      if (ctx.signal.aborted) abortedAfter = performance.now() - started;
      return 'v';
    })
    .catch(() => {});
  expect(abortedAfter).toBeGreaterThan(0);
  expect(abortedAfter).toBeLessThan(1_500);
});

it('a clock stepped forward does not abort a lease the store keeps renewing', async () => {
  const base = memoryStore({ now: realNow });
  // a store a few ms away, as every networked store is
  const store: Store = {
    ...base,
    renew: async (...a) => {
      await sleep(15);
      return base.renew(...a);
    },
  };
  const idem = createIdem({ store, lease: 1_000 });
  const value = await idem.run('k', async (ctx) => {
    jumpClock(60_000);
    await sleep(1_200); // several renewals
    expect(ctx.signal.aborted).toBe(false);
    return 'done';
  });
  expect(value).toBe('done');
});

it('a clock stepped back while waiting still gives up at waitTimeout', async () => {
  const store = memoryStore({ now: realNow });
  const holder = createIdem({ store });
  const waiter = createIdem({ store, onInProgress: 'wait', waitTimeout: 300 });
  let finish!: () => void;
  const held = holder.run('k', () => new Promise<string>((r) => (finish = () => r('held'))));
  await sleep(20);
  const started = performance.now();
  const waited = waiter.run('k', () => 'never').catch((e) => e);
  await sleep(50);
  jumpClock(-10_000);
  const settled = await Promise.race([
    waited.then(() => 'gave up'),
    sleep(3_000).then(() => 'still waiting'),
  ]);
  expect(settled).toBe('gave up');
  expect(performance.now() - started).toBeLessThan(1_500);
  finish();
  expect(await held).toBe('held');
});

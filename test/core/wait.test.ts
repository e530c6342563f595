import { createIdem, memoryStore, type Store } from 'idem';
import { expect, it } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Resolves `value()` after `ms`: a slow action. */
const later = async <T>(ms: number, value: () => T): Promise<T> => {
  await sleep(ms);
  return value();
};

function counting(store: Store, subscribe: boolean) {
  const counts = { claim: 0, subscribe: 0 };
  const wrapped: Store = {
    ...store,
    claim: (r) => {
      counts.claim++;
      return store.claim(r);
    },
    subscribe: subscribe
      ? (id, fn) => {
          counts.subscribe++;
          return store.subscribe!(id, fn);
        }
      : undefined,
  };
  return { wrapped, counts };
}

it('a waiter wakes on the store signal, subscribes once, and polls with capped backoff meanwhile', async () => {
  const store = memoryStore();
  const holder = createIdem({ store });
  const { wrapped, counts } = counting(store, true);
  const waiter = createIdem({ store: wrapped, onInProgress: 'wait' });
  const running = holder.run('k', () => later(600, () => 'done'));
  await sleep(20);
  const started = Date.now();
  const value = await waiter.run('k', () => 'never');
  const finishedAt = Date.now();
  await running;
  expect(value).toBe('done');
  // holder completes ~580 ms after the waiter started; backoff alone would poll at ~775 ms
  expect(finishedAt - started).toBeLessThan(700);
  expect(counts.subscribe).toBe(1);
  expect(counts.claim).toBeLessThanOrEqual(7);
});

it('without subscribe, waiters poll at 25, 50, 100 … capped at 1 s: a few claims, not a hammering', async () => {
  const store = memoryStore();
  const holder = createIdem({ store });
  const { wrapped, counts } = counting(store, false);
  const waiter = createIdem({ store: wrapped, onInProgress: 'wait' });
  const running = holder.run('k', () => later(3000, () => 'done'));
  await sleep(20);
  expect(await waiter.run('k', () => 'never')).toBe('done');
  await running;
  // 25+50+100+200+400+800 = 1.6 s in 6 polls, then 1 s steps: about 8-9 claims over 3 s
  expect(counts.claim).toBeGreaterThanOrEqual(6);
  expect(counts.claim).toBeLessThanOrEqual(11);
});

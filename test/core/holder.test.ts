import { createIdem, memoryStore, OutcomeTooLargeError, type Store } from 'idem';
import { expect, it, vi } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Resolves `value()` after `ms`: a slow action. */
const later = async <T>(ms: number, value: () => T): Promise<T> => {
  await sleep(ms);
  return value();
};

function renewCounting(store: Store) {
  const counter = { renew: 0 };
  return {
    store: {
      ...store,
      renew: (...a: Parameters<Store['renew']>) => {
        counter.renew++;
        return store.renew(...a);
      },
    },
    counter,
  };
}

it('a throwing releaseIf still stores the successful outcome, stops the heartbeat and surfaces the bug', async () => {
  const base = memoryStore();
  const { store, counter } = renewCounting(base);
  const idem = createIdem({ store, lease: 60 });
  const action = vi.fn(() => 'paid');
  const releaseIf = () => {
    throw new Error('classifier bug');
  };
  await expect(idem.run('k', action, { releaseIf })).rejects.toThrow('classifier bug');
  expect(await idem.run('k', action)).toBe('paid');
  expect(action).toHaveBeenCalledTimes(1);
  const renewsAfter = counter.renew;
  await sleep(200);
  expect(counter.renew).toBe(renewsAfter);
});

it('a throwing definitive classifier treats the error as transient and releases the key', async () => {
  const { store, counter } = renewCounting(memoryStore());
  const idem = createIdem({ store, lease: 60 });
  const definitive = () => {
    throw new Error('classifier bug');
  };
  await expect(idem.run('k', () => Promise.reject(new Error('boom')), { definitive })).rejects.toThrow(
    'boom',
  );
  expect(await idem.run('k', () => 'second', { definitive })).toBe('second');
  const renews = counter.renew;
  await sleep(200);
  expect(counter.renew).toBe(renews);
});

it('a store that refuses the outcome size gets the too-large marker instead, so nothing re-runs', async () => {
  const base = memoryStore();
  let refuse = true;
  const store: Store = {
    ...base,
    complete: (id, token, outcome, ttl) => {
      if (!refuse || outcome.length <= 100) return base.complete(id, token, outcome, ttl);
      refuse = false;
      return Promise.reject(new OutcomeTooLargeError(outcome.length, 100));
    },
  };
  const idem = createIdem({ store });
  const action = vi.fn(() => 'z'.repeat(500));
  const err = await idem.run('k', action).catch((e) => e);
  expect(err).toBeInstanceOf(OutcomeTooLargeError);
  expect(err.value).toHaveLength(500);
  await expect(idem.run('k', action)).rejects.toBeInstanceOf(OutcomeTooLargeError);
  expect(action).toHaveBeenCalledTimes(1);
});

it('no timers are left behind: heartbeat and renew deadlines are cleared after a run', async () => {
  const timeouts = () =>
    (process as unknown as { getActiveResourcesInfo(): string[] })
      .getActiveResourcesInfo()
      .filter((h) => h === 'Timeout').length;
  const idem = createIdem({ store: memoryStore(), lease: 60 });
  const before = timeouts();
  await idem.run('k', () => later(150, () => 1)); // several renewals
  expect(timeouts()).toBeLessThanOrEqual(before);
});

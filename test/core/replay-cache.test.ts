import { createIdem, FingerprintMismatchError, InvalidOptionError, memoryStore, type Store } from 'idem';
import { expect, it } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function counting(store: Store) {
  const calls = { claim: 0 };
  const wrapped: Store = {
    ...store,
    claim: (r) => {
      calls.claim++;
      return store.claim(r);
    },
  };
  return { store: wrapped, calls };
}

it('off by default: every replay reads the store', async () => {
  const { store, calls } = counting(memoryStore());
  const idem = createIdem({ store });
  for (let i = 0; i < 5; i++) await idem.run('k', () => 1);
  expect(calls.claim).toBe(5);
});

it('with replayCache, hot replays skip the store and still return fresh copies', async () => {
  const { store, calls } = counting(memoryStore());
  const events: string[] = [];
  const idem = createIdem({ store, replayCache: true, onEvent: (e) => events.push(e.type) });
  await idem.run('k', () => ({ n: 1 })); // runs
  const first = await idem.run('k', () => ({ n: 2 })); // read from the store, cached
  const second = await idem.run('k', () => ({ n: 3 })); // from the cache
  expect(calls.claim).toBe(2);
  expect(first).toEqual({ n: 1 });
  expect(second).toEqual({ n: 1 });
  expect(second).not.toBe(first);
  for (let i = 0; i < 20; i++) await idem.run('k', () => 0);
  expect(calls.claim).toBe(2);
  expect(events.filter((e) => e === 'replayed')).toHaveLength(22);
});

it('a cached record still refuses another fingerprint, without a store call', async () => {
  const { store, calls } = counting(memoryStore());
  const idem = createIdem({ store, replayCache: true });
  await idem.run('k', () => 1, { input: 'a' });
  await idem.run('k', () => 1, { input: 'a' });
  const before = calls.claim;
  await expect(idem.run('k', () => 1, { input: 'b' })).rejects.toBeInstanceOf(FingerprintMismatchError);
  expect(calls.claim).toBe(before);
});

it('entries stop being served a margin before the record expires, and the key runs again after expiry', async () => {
  const { store, calls } = counting(memoryStore());
  const idem = createIdem({ store, ttl: 1200, replayCache: { marginMs: 900 } });
  let runs = 0;
  const action = () => ++runs;
  await idem.run('k', action);
  await idem.run('k', action); // cached until ~300 ms before expiry
  await idem.run('k', action);
  expect(calls.claim).toBe(2);
  await sleep(400);
  expect(await idem.run('k', action)).toBe(1); // past the margin: read from the store again
  expect(calls.claim).toBe(3);
  await sleep(900);
  expect(await idem.run('k', action)).toBe(2); // expired: a new execution
});

it('is bounded: least recently used entries are evicted', async () => {
  const { store, calls } = counting(memoryStore());
  const idem = createIdem({ store, replayCache: { maxEntries: 2 } });
  for (const k of ['a', 'b', 'c']) {
    await idem.run(k, () => k);
    await idem.run(k, () => k); // cache it
  }
  const before = calls.claim;
  await idem.run('c', () => 'c');
  await idem.run('b', () => 'b');
  expect(calls.claim).toBe(before);
  await idem.run('a', () => 'a'); // evicted
  expect(calls.claim).toBe(before + 1);
});

it('rejects malformed options', () => {
  expect(() => createIdem({ store: memoryStore(), replayCache: { maxEntries: -1 } })).toThrow(
    InvalidOptionError,
  );
});

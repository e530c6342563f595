/**
 * The fingerprint guard window after a release: a retry with the same key and another input
 * gets FingerprintMismatchError (422) instead of running; the same input claims attempt 1.
 */
import { createIdem, FingerprintMismatchError, InvalidOptionError, memoryStore } from 'idem';
import { expect, it } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fail = () => {
  throw new Error('upstream 503');
};

it('after a failed attempt 1, another input within the guard window is a mismatch; the same input runs as attempt 1', async () => {
  const idem = createIdem({ store: memoryStore() });
  await expect(idem.run('pay', fail, { input: { amount: 10 } })).rejects.toThrow('upstream 503');
  let ran = 0;
  const err = await idem.run('pay', () => ++ran, { input: {} }).catch((e) => e);
  expect(err).toBeInstanceOf(FingerprintMismatchError);
  expect(ran).toBe(0);
  const r = await idem.execute('pay', (ctx) => ({ attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun }), {
    input: { amount: 10 },
  });
  expect(r).toMatchObject({ replayed: false, attempt: 1, value: { attempt: 1, mayHaveRun: false } });
});

it('a releaseIf value is guarded the same way', async () => {
  const idem = createIdem({ store: memoryStore() });
  expect(await idem.run('k', () => 'busy', { input: 'a', releaseIf: (v) => v === 'busy' })).toBe('busy');
  await expect(idem.run('k', () => 'other', { input: 'b' })).rejects.toBeInstanceOf(FingerprintMismatchError);
  expect(await idem.run('k', () => 'ok', { input: 'a' })).toBe('ok');
});

it('the guard window ends: then the key is new for any input; releaseGuard: 0 turns it off', async () => {
  const idem = createIdem({ store: memoryStore(), releaseGuard: 100 });
  await expect(idem.run('k', fail, { input: 'a' })).rejects.toThrow();
  await sleep(150);
  expect(await idem.run('k', () => 'b ran', { input: 'b' })).toBe('b ran');

  const off = createIdem({ store: memoryStore(), releaseGuard: 0 });
  await expect(off.run('k', fail, { input: 'a' })).rejects.toThrow();
  expect(await off.run('k', () => 'b ran', { input: 'b' })).toBe('b ran');
  // per call too
  await expect(idem.run('j', fail, { input: 'a', releaseGuard: 0 })).rejects.toThrow();
  expect(await idem.run('j', () => 'b ran', { input: 'b' })).toBe('b ran');
});

it('releaseGuard is validated like every duration', () => {
  expect(() => createIdem({ store: memoryStore(), releaseGuard: -1 })).toThrow(InvalidOptionError);
  expect(() => createIdem({ store: memoryStore(), releaseGuard: 'soon' as never })).toThrow(
    /^releaseGuard must be/,
  );
});

it('the guard window never outlasts the ttl: a released key is not remembered longer than a completed one', async () => {
  const idem = createIdem({ store: memoryStore(), ttl: 100 }); // releaseGuard stays the default 1m
  const { recordId } = idem.ids('k');
  await expect(idem.run('k', fail, { input: 'a' })).rejects.toThrow('upstream 503');
  const marker = await idem.store.get(recordId);
  expect(marker).toMatchObject({ attempt: 0, token: '' });
  expect(marker!.expiresAt - Date.now()).toBeLessThanOrEqual(100);
  await sleep(150);
  expect(await idem.run('k', () => 'b ran', { input: 'b' })).toBe('b ran');
});

/**
 * A claim that failed for the caller (timeout, outage) may still land in the store later.
 * The engine releases the token it sent once the store answers again, so the key is not left
 * "in progress" for a lease and then taken over as "may have run" although nothing ran.
 */
import {
  type ClaimRequest,
  createIdem,
  FingerprintMismatchError,
  memoryStore,
  type Store,
  StoreUnavailableError,
} from 'idem';
import { expect, it } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A store whose claims time out for the caller but land `landMs` later (a paused server). */
function lateLandingClaims(landMs: number) {
  const base = memoryStore();
  let late = true;
  const store: Store = {
    ...base,
    claim: (req: ClaimRequest) => {
      if (!late) return base.claim(req);
      setTimeout(() => void base.claim(req), landMs);
      return Promise.reject(new StoreUnavailableError('memory did not answer within 100 ms'));
    },
  };
  return { base, store, heal: () => (late = false) };
}

it('a claim that timed out but landed later is released in the background: nothing ran, the next call is attempt 1', async () => {
  const { base, store, heal } = lateLandingClaims(300);
  const idem = createIdem({ store, lease: '30s' });
  const { recordId } = idem.ids('k');
  let runs = 0;
  const started = Date.now();
  const err = await idem.run('k', () => ++runs).catch((e) => e);
  expect(err).toBeInstanceOf(StoreUnavailableError);
  expect(Date.now() - started).toBeLessThan(100); // the caller never waits for the clean-up
  await sleep(350);
  heal();
  // the late claim landed; the engine's release follows it within a few seconds, leaving the
  // released marker of the guard window (nobody holds it, attempt 0)
  const deadline = Date.now() + 5_000;
  while ((await base.get(recordId))?.token !== '' && Date.now() < deadline) await sleep(50);
  expect(await base.get(recordId)).toMatchObject({ state: 'in_progress', token: '', attempt: 0 });
  const r = await idem.execute('k', (ctx) => ({ attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun }));
  expect(r.value).toEqual({ attempt: 1, mayHaveRun: false });
  expect(runs).toBe(0);
  await idem.close();
});

it("the clean-up only ever releases the token it sent: the caller's own retry that holds the key meanwhile is left alone", async () => {
  const base = memoryStore();
  let fail = true;
  const releases: string[] = [];
  const store: Store = {
    ...base,
    claim: (req) => (fail ? Promise.reject(new Error('ECONNRESET')) : base.claim(req)),
    release: (id, token) => {
      releases.push(token);
      return base.release(id, token);
    },
  };
  const idem = createIdem({ store });
  const { recordId } = idem.ids('k');
  await expect(idem.run('k', () => 1)).rejects.toBeInstanceOf(StoreUnavailableError);
  fail = false;
  // the retry claims the same key with a new token and holds it while the clean-up runs
  let finish!: () => void;
  let holderToken = '';
  const holding = idem.run('k', (ctx) => {
    holderToken = ctx.token;
    return new Promise<number>((r) => (finish = () => r(2)));
  });
  await sleep(1_500);
  expect(releases.length).toBeGreaterThan(1);
  expect(new Set(releases).size).toBe(1); // one token: the failed claim's
  expect(releases).not.toContain(holderToken);
  expect(await base.get(recordId)).toMatchObject({ state: 'in_progress', token: holderToken });
  finish();
  expect(await holding).toBe(2);
  expect(await idem.run('k', () => 3)).toBe(2);
  await idem.close();
});

it('a late claim that landed on a released marker is undone into the marker again: another input is still refused', async () => {
  const { base, store, heal } = lateLandingClaims(30);
  const idem = createIdem({ store: base });
  await expect(
    idem.run('k', () => Promise.reject(new Error('upstream 503')), { input: 'a' }),
  ).rejects.toThrow('upstream 503');
  const { recordId } = idem.ids('k');
  expect(await base.get(recordId)).toMatchObject({ attempt: 0, token: '' }); // the guard marker

  // the retry's claim times out for the caller but lands on the marker 30 ms later
  const events: string[] = [];
  const flaky = createIdem({ store, onEvent: (e) => events.push(e.type) });
  await expect(flaky.run('k', () => 'never', { input: 'a' })).rejects.toBeInstanceOf(StoreUnavailableError);
  heal();
  const deadline = Date.now() + 5_000;
  while (!events.includes('released') && Date.now() < deadline) await sleep(20);
  expect(events).toContain('released');

  let ran = 0;
  await expect(idem.run('k', () => ++ran, { input: 'b' })).rejects.toBeInstanceOf(FingerprintMismatchError);
  expect(ran).toBe(0);
  const r = await idem.execute('k', (ctx) => ({ attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun }), {
    input: 'a',
  });
  expect(r.value).toEqual({ attempt: 1, mayHaveRun: false });
  await flaky.close();
});

it('a late claim that landed as a takeover is undone without forgetting that an earlier attempt may have run', async () => {
  const { base, store, heal } = lateLandingClaims(30);
  const idem = createIdem({ store: base });
  const { recordId } = idem.ids('k');
  // an earlier holder's lease ran out mid-action (it may have acted)
  await base.claim({ id: recordId, fingerprint: '', leaseMs: 50, ttlMs: 86_400_000, token: 'zombie' });
  await sleep(80);
  const events: string[] = [];
  const flaky = createIdem({ store, onEvent: (e) => events.push(e.type) });
  await expect(flaky.run('k', () => 'never')).rejects.toBeInstanceOf(StoreUnavailableError);
  heal();
  const deadline = Date.now() + 5_000;
  while (!events.includes('released') && Date.now() < deadline) await sleep(20);
  expect(await base.get(recordId)).toMatchObject({ state: 'in_progress', token: '', attempt: 2 });
  const r = await idem.execute('k', (ctx) => ({ attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun }));
  expect(r.value).toEqual({ attempt: 3, mayHaveRun: true });
  await flaky.close();
});

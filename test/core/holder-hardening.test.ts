/**
 * The holder after its action: what it reports when the store refuses a release, that the
 * action's signal never aborts once the action is done, that a failed store keeps the
 * action's error, and why a lease was lost.
 */
import {
  createIdem,
  definitive,
  type IdemEvent,
  LeaseLostError,
  memoryStore,
  type Store,
  StoreUnavailableError,
} from 'idem';
import { expect, it } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DAY = 86_400_000;

/** A memory store on a clock the test moves. */
function fakeClockStore() {
  const clock = { now: Date.now() };
  return { store: memoryStore({ now: () => clock.now }), clock };
}

it('a release the store refuses (the key was taken over) is reported as lease_lost, never released', async () => {
  const { store, clock } = fakeClockStore();
  const events: IdemEvent['type'][] = [];
  const idem = createIdem({ store, lease: 1000, onEvent: (e) => events.push(e.type) });
  const { recordId } = idem.ids('k');
  const err = await idem
    .run('k', async () => {
      clock.now += 2000; // the lease ran out on the store's clock…
      const other = await store.claim({
        id: recordId,
        fingerprint: '',
        leaseMs: 1000,
        ttlMs: DAY,
        token: 'other',
      });
      expect(other).toMatchObject({ status: 'acquired', takeover: true }); // …and another holder took over
      throw new Error('transient');
    })
    .catch((e) => e);
  expect(err.message).toBe('transient');
  expect(events).toEqual(['acquired', 'lease_lost']);
  expect(await store.get(recordId)).toMatchObject({ token: 'other', attempt: 2 });
});

it("the action's signal never aborts once the action returned, even when a renew lands after the complete", async () => {
  const base = memoryStore();
  let completes = 0;
  // The first complete lands but its answer is lost; the retry 50 ms later answers true.
  // Meanwhile the heartbeat (every 20 ms) renews a record that is already completed.
  const store: Store = {
    ...base,
    complete: async (...a) => {
      const ok = await base.complete(...a);
      if (++completes === 1) throw new Error('connection reset after the write');
      return ok;
    },
  };
  const idem = createIdem({ store, lease: 60 });
  let signal: AbortSignal | undefined;
  const value = await idem.run('k', (ctx) => {
    signal = ctx.signal;
    return 'paid';
  });
  expect(value).toBe('paid');
  expect(completes).toBe(2);
  await sleep(100);
  expect(signal?.aborted).toBe(false);
  expect(await idem.run('k', () => 'again')).toBe('paid');
});

it("when storing a definitive error fails, the StoreUnavailableError keeps the action's error as cause and says so", async () => {
  const base = memoryStore();
  const store: Store = { ...base, complete: () => Promise.reject(new Error('ECONNRESET')) };
  const idem = createIdem({ store });
  const declined = definitive(new Error('card declined'));
  const err = await idem
    .run('k', () => {
      throw declined;
    })
    .catch((e) => e);
  expect(err).toBeInstanceOf(StoreUnavailableError);
  expect(err.cause).toBe(declined);
  expect(err.message).toMatch(/card declined/);
  expect(err.message).toMatch(/ECONNRESET/);
  expect(err.actionCompleted).toBe(true);
});

it('a holder whose record vanished learns the record was lost, not taken over', async () => {
  const { store, clock } = fakeClockStore();
  const idem = createIdem({ store, lease: '30s', ttl: '1h' });
  const err = await idem
    .run('k', () => {
      clock.now += 10 * DAY; // the record is gone from the store (expired / Redis restarted)
      return 'v';
    })
    .catch((e) => e);
  expect(err).toBeInstanceOf(LeaseLostError);
  expect(err.reason).toBe('record_lost');
  expect(err.message).toMatch(/record .*(lost|vanished)/);
  expect(err.message).not.toMatch(/new holder decides/);
  expect(err.value).toBe('v');
});

it('a holder that was taken over learns it was taken over', async () => {
  const { store, clock } = fakeClockStore();
  const idem = createIdem({ store, lease: '30s' });
  const { recordId } = idem.ids('k');
  const err = await idem
    .run('k', async () => {
      clock.now += 31_000;
      await store.claim({ id: recordId, fingerprint: '', leaseMs: 30_000, ttlMs: DAY, token: 'other' });
      return 'v';
    })
    .catch((e) => e);
  expect(err).toBeInstanceOf(LeaseLostError);
  expect(err.reason).toBe('taken_over');
  expect(err.message).toMatch(/taken over/);
});

it('the signal of a holder whose record vanished aborts with reason record_lost', async () => {
  const { store, clock } = fakeClockStore();
  const idem = createIdem({ store, lease: 150, ttl: '1h' });
  const err = await idem
    .run('k', async (ctx) => {
      clock.now += 10 * DAY;
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      throw ctx.signal.reason;
    })
    .catch((e) => e);
  expect(err).toBeInstanceOf(LeaseLostError);
  expect(err.reason).toBe('record_lost');
});

it('a refused renew aborts the signal promptly even when the read that names the reason hangs', async () => {
  const base = memoryStore();
  const store: Store = {
    ...base,
    renew: async () => undefined, // the store says: not yours any more
    get: () => new Promise(() => {}), // …and then stops answering
  };
  const idem = createIdem({ store, lease: 6_000 }); // first renew after 2 s
  let abortedAfter = -1;
  let reason: unknown;
  await idem
    .run('k', async (ctx) => {
      const started = performance.now();
      await Promise.race([
        new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)),
        sleep(6_000),
      ]);
      if (ctx.signal.aborted) abortedAfter = performance.now() - started;
      reason = ctx.signal.reason;
      return 'v';
    })
    .catch(() => {});
  expect(reason).toBeInstanceOf(LeaseLostError);
  expect(abortedAfter).toBeGreaterThan(1_500);
  expect(abortedAfter).toBeLessThan(4_000); // renew refused at ~2 s: not a whole lease later
}, 15_000);

/** A store whose claim answers `delayMs` after it took effect (a stalled process, a slow link). */
function lateClaims(store: Store, delayMs: number): Store {
  return Object.assign(Object.create(store) as Store, {
    async claim(req: Parameters<Store['claim']>[0]) {
      const result = await store.claim(req);
      await sleep(delayMs);
      return result;
    },
  });
}

it('a claim answered after its lease ran out: the action does not start once another caller took the key (chaos, PostgreSQL, lib-2779)', async () => {
  const base = memoryStore();
  const events: IdemEvent['type'][] = [];
  const slow = createIdem({ store: lateClaims(base, 150), lease: 60, onEvent: (e) => events.push(e.type) });
  const other = createIdem({ store: base, lease: 60_000 });
  let ranA = 0;
  const a = slow.run('k', () => ++ranA).catch((e: unknown) => e);
  await sleep(90); // A's lease (60 ms) ran out while its claim's answer was on its way
  const b = await other.execute('k', () => 'b');
  expect(b.attempt).toBe(2); // a takeover
  const err = await a;
  expect(ranA).toBe(0);
  expect(err).toBeInstanceOf(LeaseLostError);
  expect(err).toMatchObject({ reason: 'taken_over', message: expect.stringContaining('was not run') });
  expect(events).toContain('lease_lost');
  expect(await other.run('k', () => 'again')).toBe('b'); // B's outcome stands
});

it('a claim answered late whose lease still holds: the lease is renewed first, then the action runs once', async () => {
  const base = memoryStore();
  const idem = createIdem({ store: lateClaims(base, 120), lease: 90 });
  let ran = 0;
  const r = await idem.execute('k', async (ctx) => {
    ran++;
    await sleep(50);
    expect(ctx.signal.aborted).toBe(false); // the renewed lease, not the stale one, counts
    return 'done';
  });
  expect([ran, r.value, r.replayed]).toEqual([1, 'done', false]);
  expect((await base.get(idem.ids('k').recordId))?.state).toBe('completed');
});

it('a claim answered late while the store is down: the action does not run, the caller gets StoreUnavailableError', async () => {
  const base = memoryStore();
  const down = Object.assign(Object.create(lateClaims(base, 60)) as Store, {
    renew: () => Promise.reject(new StoreUnavailableError('connection refused')),
  });
  const idem = createIdem({ store: down, lease: 90 });
  let ran = 0;
  const err = await idem.run('k', () => ++ran).catch((e: unknown) => e);
  expect(ran).toBe(0);
  expect(err).toBeInstanceOf(StoreUnavailableError);
  expect((err as Error).message).toContain('was not run');
});

it('a claim answered late while the store is down is given back once the store answers: the next caller is not told mayHaveRun', async () => {
  const base = memoryStore();
  let up = false;
  const flaky = Object.assign(Object.create(lateClaims(base, 60)) as Store, {
    renew: () => Promise.reject(new StoreUnavailableError('connection refused')),
    release: (...args: Parameters<Store['release']>) =>
      up ? base.release(...args) : Promise.reject(new StoreUnavailableError('connection refused')),
  });
  const events: IdemEvent['type'][] = [];
  const idem = createIdem({ store: flaky, lease: 90, onEvent: (e) => events.push(e.type) });
  await expect(idem.run('k', () => 'never')).rejects.toBeInstanceOf(StoreUnavailableError);
  await sleep(200); // the background release's first try (+100 ms) finds the store still down
  up = true;
  await sleep(400); // its second try (+400 ms) gives the key back
  expect(events).toContain('released');
  const next = await createIdem({ store: base, lease: 60_000 }).execute('k', () => 'ran');
  expect(next).toMatchObject({ value: 'ran', attempt: 1, replayed: false });
});

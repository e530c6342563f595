/**
 * The engine rules, run over the store under test: replay, mismatch, in-progress policies,
 * single-flight, leases and takeover, failure policy, exact outcomes, scope and expiry.
 */
import { expect, it, vi } from 'vitest';
import { createIdem, type IdemOptions } from '../core/engine.ts';
import {
  FingerprintMismatchError,
  InProgressError,
  LeaseLostError,
  OutcomeTooLargeError,
  StoreUnavailableError,
} from '../core/errors.ts';
import { definitive } from '../core/outcome.ts';
import type { Store } from '../core/store.ts';
import { sleep, uid } from './contract.ts';

/** Resolves `value()` after `ms`: a slow action. */
const later = async <T>(ms: number, value: () => T): Promise<T> => {
  await sleep(ms);
  return value();
};

import type { SuiteEnv } from './suite-env.ts';

/** A store wrapper that counts calls and lets a test break single operations. */
function instrument(store: Store, faults: Partial<Record<'renew' | 'complete', () => Promise<never>>> = {}) {
  const calls = { claim: 0, complete: 0, release: 0, renew: 0, get: 0 };
  const wrapped: Store = {
    name: store.name,
    claim: (r) => {
      calls.claim++;
      return store.claim(r);
    },
    complete: (...a) => {
      calls.complete++;
      return faults.complete ? faults.complete() : store.complete(...a);
    },
    release: (...a) => {
      calls.release++;
      return store.release(...a);
    },
    renew: (...a) => {
      calls.renew++;
      return faults.renew ? faults.renew() : store.renew(...a);
    },
    get: (id) => {
      calls.get++;
      return store.get(id);
    },
    purgeExpired: (n) => store.purgeExpired(n),
    ...(store.subscribe ? { subscribe: store.subscribe.bind(store) } : {}),
  };
  return { store: wrapped, calls };
}

const hang = () => new Promise<never>(() => {});

export function engineTests(env: SuiteEnv): void {
  const lease = env.leaseMs;
  const idemOn = (store: Store, o: Partial<IdemOptions> = {}) => createIdem({ store, lease: 30_000, ...o });

  it('runs the action once and replays its exact outcome to every later call', async () => {
    const idem = idemOn(env.store());
    const value = {
      id: 'pay_1',
      at: new Date(1_700_000_000_123),
      bytes: new Uint8Array([0, 1, 254, 255]),
      big: 12345678901234567890n,
      missing: undefined,
      map: new Map<string, unknown>([['a', 1]]),
      set: new Set([1, 'two']),
      nested: [null, -0, Number.NaN, 'é'],
    };
    const action = vi.fn(async () => value);
    const key = uid();
    const first = await idem.execute(key, action, { input: { amount: 10 } });
    const again = await idem.execute(key, action, { input: { amount: 10 } });
    expect(action).toHaveBeenCalledTimes(1);
    expect(first).toMatchObject({ replayed: false, attempt: 1 });
    expect(again.replayed).toBe(true);
    expect(again.value).toStrictEqual(value);
    expect(Object.is(again.value.nested[1], -0)).toBe(true);
  });

  it('another fingerprint raises FingerprintMismatchError (422) and leaves the record untouched', async () => {
    const s = env.store();
    const idem = idemOn(s);
    const key = uid();
    const r = await idem.execute(key, () => 'first', { input: { amount: 10 } });
    const err = await idem.run(key, () => 'second', { input: { amount: 99 } }).catch((e) => e);
    expect(err).toBeInstanceOf(FingerprintMismatchError);
    expect(err.status).toBe(422);
    expect(await idem.run(key, () => 'third', { input: { amount: 10 } })).toBe('first');
    expect((await s.get(r.recordId))?.state).toBe('completed');
  });

  it('fingerprint mismatch beats in-progress, and the holder is unaffected', async () => {
    const [a, b] = [idemOn(env.store()), idemOn(env.store())];
    const key = uid();
    let release!: () => void;
    const running = a.run(key, () => new Promise<string>((r) => (release = () => r('held'))), { input: 1 });
    await sleep(50);
    await expect(b.run(key, () => 'x', { input: 2 })).rejects.toBeInstanceOf(FingerprintMismatchError);
    await expect(a.run(key, () => 'x', { input: 2 })).rejects.toBeInstanceOf(FingerprintMismatchError);
    release();
    expect(await running).toBe('held');
  });

  it("in progress with 'reject' raises InProgressError (409) with the lease time left", async () => {
    const [a, b] = [idemOn(env.store()), idemOn(env.store())];
    const key = uid();
    let release!: () => void;
    const running = a.run(key, () => new Promise<number>((r) => (release = () => r(1))));
    // past a store's clock-skew allowance (DynamoDB's 50 ms here): it judges the lease that much
    // later, so the time left is lease − elapsed + skew, and a 50 ms timer read as 49 ms on the
    // millisecond clock answered 30,001
    await sleep(80);
    const err = await b.run(key, () => 2).catch((e) => e);
    expect(err).toBeInstanceOf(InProgressError);
    expect(err.status).toBe(409);
    expect(err.retryAfterMs).toBeGreaterThan(20_000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(30_000);
    release();
    await running;
  });

  it("in progress with 'wait' returns the holder's outcome, and gives up after waitTimeout", async () => {
    const [a, b] = [idemOn(env.store()), idemOn(env.store(), { onInProgress: 'wait' })];
    const key = uid();
    const running = a.run(key, () => later(400, () => 'from-holder'));
    await sleep(50);
    const waited = await b.execute(key, () => 'never');
    expect(waited).toMatchObject({ value: 'from-holder', replayed: true });
    await running;

    const slowKey = uid();
    const slow = a.run(slowKey, () => later(800, () => 'late'));
    await sleep(50);
    const t0 = Date.now();
    const err = await b.run(slowKey, () => 'never', { waitTimeout: 200 }).catch((e) => e);
    expect(err).toBeInstanceOf(InProgressError);
    expect(Date.now() - t0).toBeLessThan(700);
    await slow;
  });

  it('duplicates inside one process share one promise and make no store calls', async () => {
    const { store, calls } = instrument(env.store());
    const idem = idemOn(store, { onInProgress: 'wait' });
    const action = vi.fn(() => later(100, () => ({ n: 1 })));
    const key = uid();
    const results = await Promise.all(
      Array.from({ length: 50 }, () => idem.execute(key, action, { input: 'x' })),
    );
    expect(action).toHaveBeenCalledTimes(1);
    expect(calls.claim).toBe(1);
    expect(calls.complete).toBe(1);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    for (const r of results) expect(r.value).toStrictEqual({ n: 1 });
  });

  it('the heartbeat renews the lease while a long action runs, so nobody takes over', async () => {
    const [a, b] = [idemOn(env.store(), { lease }), idemOn(env.store(), { lease })];
    const key = uid();
    const running = a.execute(key, () => later(lease * 3, () => 'done'));
    let busy = 0;
    for (let i = 0; i < 5; i++) {
      await sleep(lease * 0.5);
      // on a slow store the action may finish before the fifth probe: then it replays 'done'
      const probe = await b.execute(key, () => 'stolen').catch((e: unknown) => e);
      if (probe instanceof InProgressError) busy++;
      else expect(probe).toMatchObject({ value: 'done', replayed: true });
    }
    expect(busy, 'the holder kept the key past its first lease').toBeGreaterThanOrEqual(2);
    expect(await running).toMatchObject({ value: 'done', attempt: 1 });
  });

  it('a holder that stops renewing is taken over after its lease: attempt 2, mayHaveRun, zombie fenced', async () => {
    const { store: zombieStore } = instrument(env.store(), { renew: hang });
    const zombie = idemOn(zombieStore, { lease });
    const rescuer = idemOn(env.store(), { lease });
    const key = uid();
    let zombieSignal!: AbortSignal;
    let finishZombie!: () => void;
    const zombieRun = zombie.run(key, (ctx) => {
      zombieSignal = ctx.signal;
      return new Promise<string>((r) => (finishZombie = () => r('zombie')));
    });
    await sleep(50);
    await expect(rescuer.run(key, () => 'early')).rejects.toBeInstanceOf(InProgressError);
    await sleep(lease + 100);
    const rescued = await rescuer.execute(key, (ctx) => {
      expect(ctx).toMatchObject({ attempt: 2, mayHaveRun: true });
      return 'rescuer';
    });
    expect(rescued).toMatchObject({ value: 'rescuer', attempt: 2, replayed: false });
    expect(zombieSignal.aborted).toBe(true);
    expect(zombieSignal.reason).toBeInstanceOf(LeaseLostError);
    finishZombie();
    const err = await zombieRun.catch((e) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect(err.value).toBe('zombie');
    expect(await rescuer.run(key, () => 'again')).toBe('rescuer');
  });

  it('a holder that took over and then failed leaves mayHaveRun for the next one (attempt 3)', async () => {
    const { store: zombieStore } = instrument(env.store(), { renew: hang });
    const zombie = idemOn(zombieStore, { lease });
    const idem = idemOn(env.store(), { lease });
    const key = uid();
    void zombie.run(key, () => new Promise(() => {})).catch(() => {});
    await sleep(lease + 150);
    const failed = await idem
      .run(key, (ctx) => {
        expect(ctx).toMatchObject({ attempt: 2, mayHaveRun: true });
        throw new Error('transient after takeover');
      })
      .catch((e) => e);
    expect(failed.message).toBe('transient after takeover');
    const third = await idem.execute(key, (ctx) => ({ attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun }));
    expect(third.value).toEqual({ attempt: 3, mayHaveRun: true });
  });

  it('the action gets key, token, attempt, signal and a downstreamKey stable across attempts', async () => {
    const idem = idemOn(env.store());
    const key = uid();
    const seen: string[] = [];
    await idem
      .run(key, (ctx) => {
        expect(ctx).toMatchObject({ key, attempt: 1, mayHaveRun: false });
        expect(ctx.token.length).toBeGreaterThan(8);
        expect(ctx.signal.aborted).toBe(false);
        seen.push(ctx.downstreamKey);
        throw new Error('transient');
      })
      .catch(() => {});
    await idem.run(key, (ctx) => void seen.push(ctx.downstreamKey));
    expect(seen[0]).toBe(seen[1]);
    expect(seen[0]).not.toContain(key);
  });

  it('a thrown error releases the key and the retry re-executes', async () => {
    const s = env.store();
    const idem = idemOn(s);
    const key = uid();
    const action = vi.fn().mockRejectedValueOnce(new Error('timeout')).mockResolvedValueOnce('ok');
    await expect(idem.run(key, action)).rejects.toThrow('timeout');
    expect(await idem.run(key, action)).toBe('ok');
    expect(action).toHaveBeenCalledTimes(2);
  });

  it('after a failed first attempt, a waiter with the same input runs at once as attempt 1; another input is refused', async () => {
    const [a, b] = [idemOn(env.store()), idemOn(env.store(), { onInProgress: 'wait' })];
    const key = uid();
    // handled at once: it rejects while the waiter below is still awaited
    const failing = a
      .run(key, () => later(300, () => Promise.reject(new Error('transient'))), { input: 'x' })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    await sleep(50);
    const started = Date.now();
    const waited = await b.execute(key, (ctx) => ({ attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun }), {
      input: 'x',
    });
    expect(await failing).toMatchObject({ message: 'transient' });
    expect(waited).toMatchObject({ replayed: false, value: { attempt: 1, mayHaveRun: false } });
    expect(Date.now() - started).toBeLessThan(5_000); // not a lease (30 s), not the guard (1 m)
    await expect(a.run(key, () => 'other', { input: 'y' })).rejects.toBeInstanceOf(FingerprintMismatchError);
  });

  it('a definitive error is stored and replayed as the same error', async () => {
    const idem = idemOn(env.store());
    const key = uid();
    const declined = () =>
      definitive(Object.assign(new RangeError('card declined'), { code: 'card_declined' }));
    const action = vi.fn(async () => {
      throw declined();
    });
    await expect(idem.run(key, action)).rejects.toThrow('card declined');
    const replayed = await idem.run(key, action).catch((e) => e);
    expect(action).toHaveBeenCalledTimes(1);
    expect(replayed).toMatchObject({ name: 'RangeError', message: 'card declined', code: 'card_declined' });
    const viaOption = uid();
    const opt = { definitive: (e: unknown) => (e as Error).message === 'no' };
    await expect(idem.run(viaOption, () => Promise.reject(new Error('no')), opt)).rejects.toThrow('no');
    await expect(idem.run(viaOption, () => 'ran', opt)).rejects.toThrow('no');
  });

  it('when storing the outcome fails after the action ran, the key is not released', async () => {
    const s = env.store();
    const { store } = instrument(s, { complete: () => Promise.reject(new Error('store down')) });
    const idem = idemOn(store);
    const key = uid();
    const err = await idem.execute(key, () => ({ paid: true })).catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err).toMatchObject({ actionCompleted: true, value: { paid: true }, status: 503 });
    const later = await idemOn(s)
      .run(key, () => 'second execution')
      .catch((e) => e);
    expect(later).toBeInstanceOf(InProgressError);
  });

  it('an outcome over maxOutcomeBytes raises OutcomeTooLargeError, never truncates, never re-runs', async () => {
    const idem = idemOn(env.store(), { maxOutcomeBytes: 1024 });
    const key = uid();
    const action = vi.fn(() => 'y'.repeat(5000));
    const err = await idem.run(key, action).catch((e) => e);
    expect(err).toBeInstanceOf(OutcomeTooLargeError);
    expect(err.value).toHaveLength(5000);
    expect(err.bytes).toBeGreaterThan(5000);
    await expect(idem.run(key, action)).rejects.toBeInstanceOf(OutcomeTooLargeError);
    expect(action).toHaveBeenCalledTimes(1);
  });

  it('scope separates records, and neither raw keys nor scopes reach the store', async () => {
    const s = env.store();
    const idem = idemOn(s, { scope: 'svc' });
    const key = `pay:${uid()}`;
    const a = await idem.execute(key, () => 'tenant-a', { scope: ['tenant-a'] });
    const b = await idem.execute(key, () => 'tenant-b', { scope: ['tenant-b'] });
    expect([a.value, b.value]).toEqual(['tenant-a', 'tenant-b']);
    expect(a.recordId).not.toBe(b.recordId);
    expect(a.recordId).not.toContain(key);
    expect(await s.get(key)).toBeUndefined();
  });

  it('a completed record expires after its ttl and the key runs again', async () => {
    const idem = idemOn(env.store(), { ttl: lease });
    const key = uid();
    const action = vi.fn(() => Date.now());
    await idem.run(key, action);
    await idem.run(key, action);
    await sleep(lease + 100);
    await idem.run(key, action, { input: 'now another input is fine' });
    expect(action).toHaveBeenCalledTimes(2);
  });
}

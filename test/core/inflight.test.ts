import { createIdem, InProgressError, memoryStore } from 'idem';
import { expect, it, vi } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Resolves `value()` after `ms`: a slow action. */
const later = async <T>(ms: number, value: () => T): Promise<T> => {
  await sleep(ms);
  return value();
};

it('an in-process duplicate in wait mode gives up after waitTimeout', async () => {
  const idem = createIdem({ store: memoryStore(), onInProgress: 'wait' });
  const holder = idem.run('k', () => later(500, () => 'late'));
  const t0 = Date.now();
  const err = await idem.run('k', () => 'dup', { waitTimeout: 100 }).catch((e) => e);
  expect(err).toBeInstanceOf(InProgressError);
  expect(Date.now() - t0).toBeLessThan(400);
  expect(await holder).toBe('late');
});

it('when the holder fails and releases, in-process waiters claim for themselves: one re-runs, the rest share', async () => {
  const idem = createIdem({ store: memoryStore(), onInProgress: 'wait' });
  let calls = 0;
  const action = vi.fn(async () => {
    calls++;
    await sleep(50);
    if (calls === 1) throw new Error('transient');
    return `run-${calls}`;
  });
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => idem.execute('k', action)));
  expect(results[0]).toMatchObject({ status: 'rejected', reason: { message: 'transient' } });
  const values = results.slice(1).map((r) => (r.status === 'fulfilled' ? r.value : r.reason));
  expect(action).toHaveBeenCalledTimes(2);
  for (const v of values) expect(v).toMatchObject({ value: 'run-2' });
  expect(values.filter((v) => v.replayed === false)).toHaveLength(1);
});

it('a releaseIf value is never shared with waiters as if it were stored', async () => {
  const idem = createIdem({ store: memoryStore(), onInProgress: 'wait' });
  let n = 0;
  const action = () => later(30, () => ({ status: ++n === 1 ? 429 : 200 }));
  const opts = { releaseIf: (v: { status: number }) => v.status === 429 };
  const [first, second] = await Promise.all([
    idem.execute('k', action, opts),
    idem.execute('k', action, opts),
  ]);
  expect(first).toMatchObject({ value: { status: 429 }, replayed: false });
  expect(second).toMatchObject({ value: { status: 200 }, replayed: false });
});

it('ids() answers the record id and downstream key a call would use, instance scope included', async () => {
  const idem = createIdem({ store: memoryStore(), scope: 'svc' });
  let seen = '';
  const r = await idem.execute(
    'k',
    (ctx) => {
      seen = ctx.downstreamKey;
    },
    { scope: 'tenant-1' },
  );
  expect(idem.ids('k', 'tenant-1')).toEqual({ recordId: r.recordId, downstreamKey: seen });
  expect(idem.ids('k').recordId).not.toBe(r.recordId);
});

it("joiners keep their own policy and deadline while the first call waits on another process's holder", async () => {
  const store = memoryStore();
  const other = createIdem({ store }); // "another process"
  const holding = other.run('k', () => later(1500, () => 'from-other'));
  await sleep(20);
  const idem = createIdem({ store });
  const first = idem.run('k', () => 'never', { onInProgress: 'wait', waitTimeout: 5000 });
  await sleep(50);
  let t0 = Date.now();
  await expect(idem.run('k', () => 'never', { onInProgress: 'reject' })).rejects.toBeInstanceOf(
    InProgressError,
  );
  expect(Date.now() - t0).toBeLessThan(100);
  t0 = Date.now();
  await expect(
    idem.run('k', () => 'never', { onInProgress: 'wait', waitTimeout: 100 }),
  ).rejects.toBeInstanceOf(InProgressError);
  expect(Date.now() - t0).toBeLessThan(400);
  expect(await first).toBe('from-other');
  expect(await holding).toBe('from-other');
});

it("a waiting joiner behind a 'reject' first call that got 409 keeps waiting on its own", async () => {
  const store = memoryStore();
  const other = createIdem({ store });
  const holding = other.run('k', () => later(400, () => 'from-other'));
  await sleep(20);
  const idem = createIdem({ store });
  const first = idem.run('k', () => 'never', { onInProgress: 'reject' }).catch((e) => e);
  const joiner = idem.run('k', () => 'never', { onInProgress: 'wait', waitTimeout: 3000 });
  expect(await first).toBeInstanceOf(InProgressError);
  expect(await joiner).toBe('from-other');
  await holding;
});

it('in-process retryAfterMs follows the renewed lease, not the first one', async () => {
  const idem = createIdem({ store: memoryStore(), lease: 300 });
  const running = idem.run('k', () => later(900, () => 'done'));
  await sleep(700);
  const err = await idem.run('k', () => 'dup').catch((e) => e);
  expect(err).toBeInstanceOf(InProgressError);
  expect(err.retryAfterMs).toBeGreaterThan(50);
  await running;
});

it("a later in-process joiner gets the holder's current lease as retryAfterMs, not the one seen when waiting began", async () => {
  const store = memoryStore();
  const holder = createIdem({ store, lease: 3000 });
  const waiter = createIdem({ store, lease: 3000 });
  let finish!: () => void;
  const running = holder.run('k', () => new Promise<string>((r) => (finish = () => r('done'))));
  await sleep(50);
  const waiting = waiter.run('k', () => 'never', { onInProgress: 'wait', waitTimeout: 10_000 });
  await sleep(4000); // the holder renewed its 3 s lease several times meanwhile
  const err = await waiter.run('k', () => 'dup', { onInProgress: 'reject' }).catch((e) => e);
  expect(err).toBeInstanceOf(InProgressError);
  expect(err.retryAfterMs).toBeGreaterThan(500);
  finish();
  expect(await running).toBe('done');
  expect(await waiting).toBe('done');
}, 15_000);

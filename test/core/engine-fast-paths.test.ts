/**
 * The engine's cheap paths keep its guarantees: record ids as they always were, unique fencing
 * tokens, one heartbeat timer that still renews every holder in time, and a signal made on
 * first read that still reports a lease lost before that.
 */
import { hash } from 'node:crypto';
import { createIdem, LeaseLostError, memoryStore, type Store } from 'idem';
import { expect, it } from 'vitest';
import { recordIdFrom, recordIdMemo, recordIdOf, recordIdPrefix } from '../../src/core/keys.ts';
import { createHeartbeatTimer } from '../../src/core/lease.ts';
import { createTokens } from '../../src/core/turn.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The record id as idem has always computed it. */
const originalId = (scope: string[], key: string) =>
  hash('sha256', JSON.stringify([...scope, key]), 'base64url');

it('record ids from a prebuilt prefix and from the memo are the ids idem always stored', () => {
  const scopes = [[], ['tenant-a'], ['a"b', 'c\\d', 'é ☃', ''], ['x', 'y', 'z']];
  const keys = ['k', 'pay:"quoted"', 'back\\slash', ' ', '~'.repeat(255)];
  for (const scope of scopes) {
    const memo = recordIdMemo(recordIdPrefix(scope), 2);
    for (const key of keys) {
      expect(recordIdOf(scope, key)).toBe(originalId(scope, key));
      expect(recordIdFrom(recordIdPrefix(scope), key)).toBe(originalId(scope, key));
      expect(memo(key)).toBe(originalId(scope, key)); // twice: once hashed, once remembered
      expect(memo(key)).toBe(originalId(scope, key));
    }
  }
  const idem = createIdem({ store: memoryStore(), scope: ['t"1'] });
  expect(idem.ids('k').recordId).toBe(originalId(['t"1'], 'k'));
  expect(idem.ids('k', ['u\\2']).recordId).toBe(originalId(['t"1', 'u\\2'], 'k'));
});

it('the record-id memo forgets its oldest key past its size and still answers right', () => {
  const memo = recordIdMemo('[', 3);
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 10; i++) expect(memo(`k${i}`)).toBe(originalId([], `k${i}`));
  }
});

it('fencing tokens are unique within an engine and between engines, and are what the store holds', async () => {
  const a = createTokens();
  const b = createTokens();
  const seen = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    seen.add(a());
    seen.add(b());
  }
  expect(seen.size).toBe(20_000);

  const store = memoryStore();
  const idem = createIdem({ store });
  const other = createIdem({ store });
  const tokens: string[] = [];
  for (const engine of [idem, other, idem]) {
    await engine.run(`k${tokens.length}`, async (ctx) => {
      expect((await store.get(ctx.recordId))?.token).toBe(ctx.token);
      tokens.push(ctx.token);
    });
  }
  expect(new Set(tokens).size).toBe(3);
});

it('one heartbeat timer renews every holder of an instance in time, whatever their lease', async () => {
  const base = memoryStore();
  const renewed = new Map<string, number>();
  const store: Store = {
    ...base,
    renew: (id, token, leaseMs) => {
      renewed.set(id, (renewed.get(id) ?? 0) + 1);
      return base.renew(id, token, leaseMs);
    },
  };
  const idem = createIdem({ store, lease: 300 });
  const rival = createIdem({ store: base, lease: 300 });
  const aborted: boolean[] = [];
  const slow = (lease: number) => (key: string) =>
    idem.execute(
      key,
      async (ctx) => {
        await sleep(1200);
        aborted.push(ctx.signal.aborted);
        return ctx.attempt;
      },
      { lease },
    );
  const runs = [
    ...['a', 'b', 'c'].map(slow(300)),
    slow(200)('short'),
    slow(6000)('long'), // its first beat is due after 2 s: it needs none before it finishes
  ];
  await sleep(700); // every 200-300 ms lease has run out 2-3 times over unless renewed
  for (const key of ['a', 'b', 'c', 'short']) {
    await expect(rival.run(key, () => 'stolen')).rejects.toMatchObject({ name: 'InProgressError' });
  }
  const results = await Promise.all(runs);
  expect(results.map((r) => [r.value, r.replayed])).toEqual(Array(5).fill([1, false]));
  expect(aborted).toEqual(Array(5).fill(false));
  for (const key of ['a', 'b', 'c', 'short']) {
    expect(renewed.get(idem.ids(key).recordId)).toBeGreaterThanOrEqual(3);
  }
  expect(renewed.get(idem.ids('long').recordId)).toBeUndefined();
});

it('the shared timer beats pulses in due order, within their slack, and never a deleted one', async () => {
  const beats = createHeartbeatTimer();
  const start = performance.now();
  const fired: Array<[string, number]> = [];
  const pulse = (name: string, inMs: number, slackMs = 5) => ({
    dueAt: start + inMs,
    slackMs,
    beat: () => fired.push([name, performance.now() - start]),
    prev: undefined,
    next: undefined,
  });
  const gone = pulse('deleted', 20);
  for (const p of [pulse('late', 120), pulse('early', 40), gone, pulse('middle', 80)]) beats.add(p);
  beats.delete(gone);
  await sleep(250);
  expect(fired.map(([name]) => name)).toEqual(['early', 'middle', 'late']);
  for (const [name, at] of fired) {
    const due = { early: 40, middle: 80, late: 120 }[name as 'early']!;
    expect(at).toBeGreaterThanOrEqual(due - 5 - 1); // at most its slack early (+1 ms timer rounding)
  }
});

it('a lease lost before the action reads ctx.signal still shows as an aborted signal', async () => {
  const base = memoryStore();
  // the store stops confirming the lease: renewals answer "lost" while the record is ours
  const store: Store = { ...base, renew: async () => undefined };
  const idem = createIdem({ store, lease: 60 });
  const error = await idem
    .run('k', async (ctx) => {
      await sleep(200); // the first renewal (after 20 ms) was refused long before this
      const { signal } = ctx; // the first read of the signal
      expect(signal.aborted).toBe(true);
      expect(signal.reason).toBeInstanceOf(LeaseLostError);
      throw signal.reason;
    })
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(LeaseLostError);
});

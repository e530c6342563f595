/**
 * The store contract, checked directly against the store: each transition, its fencing, and
 * the claim race.
 */
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { InvalidOptionError, OutcomeTooLargeError, StoreUnavailableError } from '../core/errors.ts';
import type { ClaimRequest, ListedRecord, ListOptions, Store } from '../core/store.ts';
import type { SuiteEnv } from './suite-env.ts';

export const uid = (p = 'k') => `${p}-${randomBytes(9).toString('base64url')}`;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DAY = 86_400_000;

export function contractTests(env: SuiteEnv): void {
  const lease = env.leaseMs;
  const req = (over: Partial<ClaimRequest> = {}): ClaimRequest => ({
    id: uid(),
    fingerprint: 'fp-a',
    leaseMs: 30_000,
    ttlMs: DAY,
    token: uid('t'),
    ...over,
  });
  const claimOk = async (s: Store, r: ClaimRequest) => {
    const c = await s.claim(r);
    if (c.status !== 'acquired') throw new Error(`expected to acquire, got ${JSON.stringify(c)}`);
    return c;
  };

  it('claim on an absent key acquires attempt 1 with a lease from the store clock', async () => {
    const s = env.store();
    const before = Date.now();
    const c = await claimOk(s, req({ leaseMs: 30_000 }));
    expect(c).toMatchObject({ attempt: 1, takeover: false });
    expect(c.leaseUntil).toBeGreaterThan(before + 25_000);
    expect(c.leaseUntil).toBeLessThan(Date.now() + 35_000);
  });

  it('a second claim while the lease holds answers the existing record and the store time', async () => {
    const s = env.store();
    const r = req();
    await claimOk(s, r);
    const c = await s.claim({ ...r, token: uid('t') });
    expect(c.status).toBe('existing');
    if (c.status !== 'existing') return;
    expect(c.record).toMatchObject({ id: r.id, state: 'in_progress', fingerprint: 'fp-a', token: r.token });
    expect(c.record.leaseUntil).toBeGreaterThan(c.now);
    expect(Math.abs(c.now - Date.now())).toBeLessThan(5_000);
  });

  it('a claim with another fingerprint never touches the record, in progress or completed', async () => {
    const s = env.store();
    const r = req();
    await claimOk(s, r);
    const other = await s.claim({ ...r, fingerprint: 'fp-b', token: uid('t') });
    expect(other.status).toBe('existing');
    expect((await s.get(r.id))?.token).toBe(r.token);
    expect(await s.complete(r.id, r.token, 'out', DAY)).toBe(true);
    await s.claim({ ...r, fingerprint: 'fp-b', token: uid('t') });
    expect(await s.get(r.id)).toMatchObject({ state: 'completed', fingerprint: 'fp-a', outcome: 'out' });
  });

  it('complete is fenced by the token and idempotent for the holder', async () => {
    const s = env.store();
    const r = req();
    await claimOk(s, r);
    expect(await s.complete(r.id, uid('t'), 'zombie', DAY)).toBe(false);
    expect(await s.complete(r.id, r.token, 'real', DAY)).toBe(true);
    expect(await s.complete(r.id, r.token, 'real', DAY)).toBe(true);
    expect(await s.complete(uid(), r.token, 'x', DAY)).toBe(false);
    const c = await s.claim({ ...r, token: uid('t') });
    expect(c.status === 'existing' && c.record).toMatchObject({
      state: 'completed',
      outcome: 'real',
      leaseUntil: 0,
    });
  });

  it('outcomes are stored exactly: unicode, quotes, control characters and 2 MiB', async () => {
    const s = env.store();
    const big = Math.min(2 * 1024 * 1024, env.maxOutcomeBytes ?? Number.POSITIVE_INFINITY);
    const samples = ['', "π≈3.14 — “quotes” 'single' \\ \u0000\u0001\n\t 🚀", 'x'.repeat(big)];
    for (const outcome of samples) {
      const r = req();
      await claimOk(s, r);
      expect(await s.complete(r.id, r.token, outcome, DAY)).toBe(true);
      expect((await s.get(r.id))?.outcome).toBe(outcome);
    }
  });

  it("a 2 MiB outcome over the store's own size limit rejects with OutcomeTooLargeError and keeps the record in progress", async ({
    skip,
  }) => {
    if (env.maxOutcomeBytes === undefined) return skip('the store has no outcome size limit');
    const s = env.store();
    const r = req();
    await claimOk(s, r);
    const err = await s.complete(r.id, r.token, 'x'.repeat(2 * 1024 * 1024), DAY).catch((e) => e);
    expect(err).toBeInstanceOf(OutcomeTooLargeError);
    expect(await s.get(r.id)).toMatchObject({ state: 'in_progress', token: r.token });
    expect(await s.complete(r.id, r.token, 'small', DAY)).toBe(true);
  });

  it('release is fenced by the token and frees the key for a new attempt 1', async () => {
    const s = env.store();
    const r = req();
    await claimOk(s, r);
    expect(await s.release(r.id, uid('t'))).toBe(false);
    expect(await s.get(r.id)).toBeDefined();
    expect(await s.release(r.id, r.token)).toBe(true);
    expect(await s.get(r.id)).toBeUndefined();
    expect(await claimOk(s, { ...r, token: uid('t') })).toMatchObject({ attempt: 1, takeover: false });
  });

  it('a release on attempt 1 with a guard window keeps the fingerprint: another input is refused, the same claims attempt 1', async () => {
    const s = env.store();
    const guard = lease * 2;
    const r = req();
    await claimOk(s, r);
    expect(await s.release(r.id, r.token, guard)).toBe(true);
    // the marker: nobody holds it, attempt 0, the fingerprint kept until the guard ends
    expect(await s.get(r.id)).toMatchObject({
      state: 'in_progress',
      fingerprint: 'fp-a',
      token: '',
      attempt: 0,
    });
    for (const token of ['', r.token]) {
      expect(await s.complete(r.id, token, 'x', DAY)).toBe(false);
      expect(await s.renew(r.id, token, 30_000)).toBeUndefined();
      expect(await s.release(r.id, token, guard)).toBe(false);
    }
    const other = await s.claim({ ...r, fingerprint: 'fp-b', token: uid('t') });
    expect(other.status === 'existing' && other.record).toMatchObject({ fingerprint: 'fp-a', attempt: 0 });
    const t2 = uid('t');
    expect(await claimOk(s, { ...r, token: t2 })).toMatchObject({ attempt: 1, takeover: false });
    expect(await s.complete(r.id, t2, 'done', DAY)).toBe(true);
    expect(await s.get(r.id)).toMatchObject({ state: 'completed', attempt: 1, outcome: 'done' });

    // after the guard window the key is new again, for any input
    const g = req();
    await claimOk(s, g);
    expect(await s.release(g.id, g.token, guard)).toBe(true);
    await sleep(guard + 100);
    expect(await s.get(g.id)).toBeUndefined();
    expect(await claimOk(s, { ...g, fingerprint: 'fp-b', token: uid('t') })).toMatchObject({
      attempt: 1,
      takeover: false,
    });
  });

  it('a released marker: its lease is over at once, 50 concurrent claims give it to exactly one as attempt 1 with a fresh retention', async () => {
    const s = env.store();
    const guard = 60_000;
    const r = req({ leaseMs: 30_000, ttlMs: DAY });
    await claimOk(s, r);
    expect(await s.release(r.id, r.token, guard)).toBe(true);
    const marker = await s.get(r.id);
    expect(marker).toMatchObject({ state: 'in_progress', token: '', attempt: 0 });
    // within a second of the release: the lease ended then, the marker lasts the guard window
    expect(marker!.leaseUntil).toBeLessThanOrEqual(Date.now() + 1_000);
    expect(marker!.expiresAt - marker!.leaseUntil).toBe(guard);
    const results = await Promise.all(Array.from({ length: 50 }, () => s.claim({ ...r, token: uid('t') })));
    const won = results.filter((x) => x.status === 'acquired');
    expect(won).toHaveLength(1);
    expect(won[0]).toMatchObject({ attempt: 1, takeover: false });
    for (const x of results) {
      if (x.status === 'existing') expect(x.record).toMatchObject({ state: 'in_progress', attempt: 1 });
    }
    // the new holder's record is kept like any claim's: leaseUntil + max(lease, ttl)
    const held = await s.get(r.id);
    expect(held!.expiresAt).toBe(held!.leaseUntil + DAY);
  });

  it('a guard that is not a finite number >= 0 is an InvalidOptionError and the holder keeps the record', async () => {
    const s = env.store();
    const r = req();
    await claimOk(s, r);
    for (const guard of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(s.release(r.id, r.token, guard), String(guard)).rejects.toBeInstanceOf(InvalidOptionError);
    }
    expect(await s.get(r.id)).toMatchObject({ state: 'in_progress', token: r.token, attempt: 1 });
    expect(await s.release(r.id, r.token, 0)).toBe(true);
    expect(await s.get(r.id)).toBeUndefined();
  });

  it('a release after a takeover ignores the guard window: the next claim is still a takeover', async () => {
    const s = env.store();
    const r = req({ leaseMs: lease });
    await claimOk(s, r);
    await sleep(lease + 100);
    const t2 = uid('t');
    await claimOk(s, { ...r, token: t2 });
    expect(await s.release(r.id, t2, 60_000)).toBe(true);
    expect(await s.get(r.id)).toMatchObject({ state: 'in_progress', token: '', attempt: 2 });
    expect(await claimOk(s, { ...r, token: uid('t') })).toMatchObject({ attempt: 3, takeover: true });
  });

  it('a completed record cannot be released or renewed', async () => {
    const s = env.store();
    const r = req();
    await claimOk(s, r);
    await s.complete(r.id, r.token, 'done', DAY);
    expect(await s.release(r.id, r.token)).toBe(false);
    expect(await s.renew(r.id, r.token, 30_000)).toBeUndefined();
    expect((await s.get(r.id))?.outcome).toBe('done');
  });

  it('renew extends the lease for the holder only', async () => {
    const s = env.store();
    const r = req({ leaseMs: lease });
    const c = await claimOk(s, r);
    expect(await s.renew(r.id, uid('t'), 60_000)).toBeUndefined();
    const until = await s.renew(r.id, r.token, 60_000);
    expect(until).toBeGreaterThan(c.leaseUntil);
    await sleep(lease + 100);
    const again = await s.claim({ ...r, token: uid('t') });
    expect(again.status).toBe('existing');
  });

  it('an expired lease is taken over with attempt + 1, and the old holder is fenced off', async () => {
    const s = env.store();
    const r = req({ leaseMs: lease });
    await claimOk(s, r);
    await sleep(lease + 100);
    const t2 = uid('t');
    expect(await claimOk(s, { ...r, token: t2 })).toMatchObject({ attempt: 2, takeover: true });
    expect(await s.complete(r.id, r.token, 'zombie', DAY)).toBe(false);
    expect(await s.renew(r.id, r.token, 30_000)).toBeUndefined();
    expect(await s.release(r.id, r.token)).toBe(false);
    expect(await s.complete(r.id, t2, 'winner', DAY)).toBe(true);
    expect((await s.get(r.id))?.outcome).toBe('winner');
  });

  it('in progress, the record is kept until leaseUntil + max(lease, ttl), and renew keeps that margin', async () => {
    const s = env.store();
    for (const [leaseMs, ttlMs] of [
      [lease, 50],
      [lease, DAY],
    ] as const) {
      const r = req({ leaseMs, ttlMs });
      const c = await claimOk(s, r);
      const margin = Math.max(leaseMs, ttlMs);
      expect(await s.get(r.id)).toMatchObject({ leaseUntil: c.leaseUntil, expiresAt: c.leaseUntil + margin });
      const until = await s.renew(r.id, r.token, 60_000);
      expect(until).toBeGreaterThan(c.leaseUntil);
      expect(await s.get(r.id)).toMatchObject({ leaseUntil: until, expiresAt: until! + margin });
    }
  });

  it('a holder that stops with ttl <= lease is still taken over after its lease: attempt 2, takeover', async () => {
    const s = env.store();
    const r = req({ leaseMs: lease, ttlMs: 50 });
    await claimOk(s, r);
    await sleep(lease + 100);
    expect(await claimOk(s, { ...r, token: uid('t') })).toMatchObject({ attempt: 2, takeover: true });
  });

  it('a release after a takeover keeps the record: the next claim is a takeover with attempt + 1', async () => {
    const s = env.store();
    const r = req({ leaseMs: lease });
    await claimOk(s, r);
    await sleep(lease + 100);
    const t2 = uid('t');
    expect(await claimOk(s, { ...r, token: t2 })).toMatchObject({ attempt: 2, takeover: true });
    expect(await s.release(r.id, r.token)).toBe(false);
    expect(await s.release(r.id, t2)).toBe(true);
    expect(await s.get(r.id)).toMatchObject({
      state: 'in_progress',
      fingerprint: 'fp-a',
      attempt: 2,
      token: '',
    });
    // released means no holder: the token that released can no longer act on the record
    expect(await s.release(r.id, t2)).toBe(false);
    expect(await s.renew(r.id, t2, 30_000)).toBeUndefined();
    expect(await s.complete(r.id, t2, 'late', DAY)).toBe(false);
    const other = await s.claim({ ...r, fingerprint: 'fp-b', token: uid('t') });
    expect(other.status).toBe('existing');
    if (other.status === 'existing') {
      expect(other.record).toMatchObject({ state: 'in_progress', fingerprint: 'fp-a', attempt: 2 });
      expect(other.record.leaseUntil).toBeLessThanOrEqual(other.now);
    }
    const t3 = uid('t');
    expect(await claimOk(s, { ...r, token: t3 })).toMatchObject({ attempt: 3, takeover: true });
    expect(await s.complete(r.id, t3, 'third', DAY)).toBe(true);
    expect(await s.get(r.id)).toMatchObject({ state: 'completed', attempt: 3, outcome: 'third' });
  });

  it('an expired lease is not taken over by another fingerprint', async () => {
    const s = env.store();
    const r = req({ leaseMs: lease });
    await claimOk(s, r);
    await sleep(lease + 100);
    const c = await s.claim({ ...r, fingerprint: 'fp-b', token: uid('t') });
    expect(c.status).toBe('existing');
    expect(await s.get(r.id)).toMatchObject({ token: r.token, fingerprint: 'fp-a', attempt: 1 });
  });

  it('a completed record expires after its ttl and the key is new again, for any fingerprint', async () => {
    const s = env.store();
    const r = req();
    await claimOk(s, r);
    await s.complete(r.id, r.token, 'old', lease);
    await sleep(lease + 100);
    expect(await s.get(r.id)).toBeUndefined();
    const c = await claimOk(s, { ...r, fingerprint: 'fp-b', token: uid('t') });
    expect(c).toMatchObject({ attempt: 1, takeover: false });
    expect((await s.get(r.id))?.outcome).toBeUndefined();
  });

  it('purgeExpired deletes expired records in bounded batches and keeps live ones', async () => {
    const s = env.store();
    const expired = Array.from({ length: 5 }, () => req());
    for (const r of expired) {
      await claimOk(s, r);
      await s.complete(r.id, r.token, 'x', 50);
    }
    const live = req();
    await claimOk(s, live);
    await s.complete(live.id, live.token, 'keep', DAY);
    await sleep(150);
    const first = await s.purgeExpired(2);
    // A store that expires records on its own (Redis) has nothing left to purge; any other
    // store must delete a full batch here: five records are past their expiry.
    expect(first).toBe(env.selfExpiring ? 0 : 2);
    let total = first;
    for (let i = 0, n = 1; i < 100 && n > 0; i++) total += n = await s.purgeExpired(2);
    if (!env.selfExpiring) expect(total).toBeGreaterThanOrEqual(expired.length);
    for (const r of expired) expect(await s.get(r.id)).toBeUndefined();
    expect((await s.get(live.id))?.outcome).toBe('keep');
  });

  it('an empty or absent token never completes, releases or renews a record', async () => {
    const s = env.store();
    const r = req({ leaseMs: lease });
    await claimOk(s, r);
    for (const token of ['', undefined as unknown as string]) {
      expect(await s.complete(r.id, token, 'nobody', DAY)).toBe(false);
      expect(await s.renew(r.id, token, 30_000)).toBeUndefined();
      expect(await s.release(r.id, token)).toBe(false);
    }
    expect(await s.get(r.id)).toMatchObject({ state: 'in_progress', token: r.token });
    // After a takeover and a release the stored token is '': still nobody may act on it.
    await sleep(lease + 100);
    const t2 = uid('t');
    await claimOk(s, { ...r, token: t2 });
    expect(await s.release(r.id, t2)).toBe(true);
    expect(await s.get(r.id)).toMatchObject({ state: 'in_progress', token: '', attempt: 2 });
    for (const token of ['', undefined as unknown as string]) {
      expect(await s.complete(r.id, token, 'nobody', DAY)).toBe(false);
      expect(await s.renew(r.id, token, 30_000)).toBeUndefined();
      expect(await s.release(r.id, token)).toBe(false);
    }
    expect(await s.get(r.id)).toMatchObject({ state: 'in_progress', token: '', attempt: 2 });
    expect(await claimOk(s, { ...r, token: uid('t') })).toMatchObject({ attempt: 3, takeover: true });
  });

  it('completing again, even with another outcome, answers true for the same token and never overwrites', async () => {
    const s = env.store();
    const r = req();
    await claimOk(s, r);
    expect(await s.complete(r.id, r.token, 'first', DAY)).toBe(true);
    const stored = await s.get(r.id);
    expect(await s.complete(r.id, r.token, 'second', 2 * DAY)).toBe(true);
    expect(await s.complete(r.id, uid('t'), 'third', DAY)).toBe(false);
    const after = await s.get(r.id);
    expect(after).toMatchObject({ state: 'completed', outcome: 'first', token: r.token });
    expect(after?.expiresAt).toBe(stored?.expiresAt);
  });

  it("a zombie's complete racing a takeover: exactly one of them wins, every time", async () => {
    const s = env.store();
    const rs = Array.from({ length: 20 }, () => req({ leaseMs: lease }));
    for (const r of rs) await claimOk(s, r);
    await sleep(lease + 100);
    const races = await Promise.all(
      rs.map(async (r) => {
        const t2 = uid('t');
        const [completed, claimed] = await Promise.all([
          s.complete(r.id, r.token, 'zombie', DAY),
          s.claim({ ...r, token: t2 }),
        ]);
        return { r, t2, completed, claimed };
      }),
    );
    for (const { r, t2, completed, claimed } of races) {
      expect(completed !== (claimed.status === 'acquired')).toBe(true);
      const record = await s.get(r.id);
      if (completed) {
        expect(claimed.status === 'existing' && claimed.record.state).toBe('completed');
        expect(record).toMatchObject({ state: 'completed', outcome: 'zombie', token: r.token });
      } else {
        expect(claimed).toMatchObject({ status: 'acquired', attempt: 2, takeover: true });
        expect(record).toMatchObject({ state: 'in_progress', token: t2, attempt: 2 });
        expect(await s.complete(r.id, t2, 'winner', DAY)).toBe(true);
      }
    }
  });

  it('a lease that ran out but was not taken over still belongs to its holder', async () => {
    const s = env.store();
    const r = req({ leaseMs: lease });
    const renewed = req({ leaseMs: lease });
    await claimOk(s, r);
    await claimOk(s, renewed);
    await sleep(lease + 100);
    expect(await s.get(r.id)).toMatchObject({ state: 'in_progress', token: r.token, attempt: 1 });
    expect(await s.complete(r.id, r.token, 'late but first', DAY)).toBe(true);
    const c = await s.claim({ ...r, token: uid('t') });
    expect(c.status === 'existing' && c.record).toMatchObject({
      state: 'completed',
      outcome: 'late but first',
    });
    const until = await s.renew(renewed.id, renewed.token, 30_000);
    expect(until).toBeGreaterThan(Date.now() + 20_000);
    expect((await s.claim({ ...renewed, token: uid('t') })).status).toBe('existing');
  });

  it('close() resolves, twice, and afterwards every operation settles at once: answered or StoreUnavailableError', async ({
    skip,
  }) => {
    const s = await env.create();
    if (!s.close) return skip('the store has no close');
    const r = req();
    await claimOk(s, r);
    await s.close();
    await s.close();
    const ops: Array<() => Promise<unknown>> = [
      () => s.claim(req()),
      () => s.complete(r.id, r.token, 'x', DAY),
      () => s.release(r.id, r.token),
      () => s.renew(r.id, r.token, 30_000),
      () => s.get(r.id),
      () => s.purgeExpired(10),
    ];
    for (const op of ops) {
      const started = Date.now();
      const settled = await Promise.race([
        op().then(
          () => 'answered',
          (e: unknown) => (e instanceof StoreUnavailableError ? 'unavailable' : `other: ${e}`),
        ),
        sleep(2_000).then(() => 'hung'),
      ]);
      expect(['answered', 'unavailable']).toContain(settled);
      expect(Date.now() - started).toBeLessThan(2_000);
    }
  });

  it('an unsubscribed listener is not called; the others still are', async ({ skip }) => {
    const s = env.store();
    if (!s.subscribe) return skip('the store has no subscribe: waiters poll');
    const r = req();
    await claimOk(s, r);
    expect((await s.claim({ ...r, token: uid('t') })).status).toBe('existing');
    let gone = 0;
    let kept = 0;
    const offGone = s.subscribe(r.id, () => gone++);
    const offKept = s.subscribe(r.id, () => kept++);
    try {
      await sleep(500); // a subscription may take a moment to start listening
      // a store may wake every subscriber once when it (re)connects: count from here
      gone = 0;
      kept = 0;
      offGone();
      expect(await s.complete(r.id, r.token, 'done', DAY)).toBe(true);
      const ended = Date.now();
      while (kept === 0 && Date.now() - ended < 1_000) await sleep(10);
      await sleep(100);
      expect(kept).toBeGreaterThan(0);
      expect(gone).toBe(0);
    } finally {
      offGone();
      offKept();
    }
  });

  it('subscribe wakes a waiter on complete, on release, on a release into a guard marker, and on a release after a takeover', async ({
    skip,
  }) => {
    const s = env.store();
    if (!s.subscribe) return skip('the store has no subscribe: waiters poll');
    // Like the engine: a claim finds the holder, then subscribes (some stores only notify
    // records a claim found held), then the holder ends its turn.
    const woken = async (r: ClaimRequest, end: () => Promise<boolean>) => {
      expect((await s.claim({ ...r, token: uid('t') })).status).toBe('existing');
      let fired = false;
      const off = s.subscribe!(r.id, () => {
        fired = true;
      });
      try {
        await sleep(500); // a subscription may take a moment to start listening
        expect(await end()).toBe(true);
        const ended = Date.now();
        while (!fired && Date.now() - ended < 1_000) await sleep(10);
        return fired;
      } finally {
        off();
      }
    };
    const completed = req();
    await claimOk(s, completed);
    const released = req();
    await claimOk(s, released);
    const guarded = req();
    await claimOk(s, guarded);
    const retaken = req({ leaseMs: lease });
    await claimOk(s, retaken);
    await sleep(lease + 100);
    const t2 = uid('t');
    expect(await claimOk(s, { ...retaken, token: t2 })).toMatchObject({ attempt: 2 });
    expect(
      await Promise.all([
        woken(completed, () => s.complete(completed.id, completed.token, 'done', DAY)),
        woken(released, () => s.release(released.id, released.token)),
        // a release into the guard window's marker wakes waiters too: they claim it at once
        woken(guarded, () => s.release(guarded.id, guarded.token, 60_000)),
        woken(retaken, () => s.release(retaken.id, t2)),
      ]),
    ).toEqual([true, true, true, true]);
  });

  /** Every live record `list` answers, page by page (`limit` each), with the pages' count. */
  const listAll = async (s: Store, o: Omit<ListOptions, 'cursor'>) => {
    const all: ListedRecord[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await s.inspect!.list({ ...o, cursor });
      expect(Math.abs(page.now - Date.now())).toBeLessThan(5_000);
      all.push(...page.records);
      cursor = page.cursor;
      pages++;
    } while (cursor !== undefined && pages < 10_000);
    return { all, pages };
  };

  it('inspect.list pages through every live record once: state, attempt, lease, expiry, fingerprint, outcome size, never the outcome', async ({
    skip,
  }) => {
    const s = env.store();
    if (!s.inspect) return skip('the store has no inspect capability');
    const done = req({ fingerprint: 'fp-done' });
    await claimOk(s, done);
    await s.complete(done.id, done.token, 'héllo ✓', DAY); // 10 bytes of UTF-8
    const held = req();
    const heldAt = await claimOk(s, held);
    const marker = req();
    await claimOk(s, marker);
    await s.release(marker.id, marker.token, 60_000);
    const gone = req();
    await claimOk(s, gone);
    await s.complete(gone.id, gone.token, 'old', 1);
    const extra = Array.from({ length: 5 }, () => req());
    for (const r of extra) await claimOk(s, r);
    await sleep(lease + 100);
    const { all, pages } = await listAll(s, { limit: 3 });
    expect(pages).toBeGreaterThan(2);
    const ids = all.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length); // no record twice
    const byId = new Map(all.map((r) => [r.id, r]));
    expect(byId.get(done.id)).toEqual({
      id: done.id,
      state: 'completed',
      attempt: 1,
      leaseUntil: 0,
      expiresAt: expect.any(Number),
      fingerprint: 'fp-done',
      outcomeBytes: 10,
      createdAt: expect.any(Number),
      completedAt: expect.any(Number),
      scopeHash: '',
    });
    expect(byId.get(held.id)).toMatchObject({
      state: 'in_progress',
      attempt: 1,
      leaseUntil: heldAt.leaseUntil,
      fingerprint: 'fp-a',
      outcomeBytes: 0,
    });
    expect(byId.get(held.id)!.expiresAt).toBeGreaterThan(heldAt.leaseUntil);
    expect(byId.get(marker.id)).toMatchObject({ state: 'released', attempt: 0 });
    expect(byId.has(gone.id)).toBe(false); // expired: not listed
    for (const r of extra) expect(byId.get(r.id)?.state).toBe('in_progress');
    expect(JSON.stringify(all)).not.toContain('héllo');
  });

  it('inspect keeps when a record was created and completed, and its scope hash: through takeovers, renewals and a released marker', async ({
    skip,
  }) => {
    const s = env.store();
    if (!s.inspect) return skip('the store has no inspect capability');
    const near = (t: number, at: number) => expect(Math.abs(t - at)).toBeLessThan(5_000);
    const r = req({ leaseMs: lease, scopeHash: 'c2NvcGUtYQ' });
    const t0 = Date.now();
    await claimOk(s, r);
    const first = await s.inspect.get(r.id);
    expect(first).toMatchObject({ id: r.id, state: 'in_progress', completedAt: 0, scopeHash: 'c2NvcGUtYQ' });
    near(first!.createdAt, t0);
    expect(await s.renew(r.id, r.token, lease)).toBeGreaterThan(0);
    await sleep(lease + 100);
    const again = { ...r, token: uid('t') };
    expect(await claimOk(s, again)).toMatchObject({ attempt: 2, takeover: true });
    const taken = await s.inspect.get(r.id);
    expect(taken).toMatchObject({
      attempt: 2,
      createdAt: first!.createdAt,
      completedAt: 0,
      scopeHash: 'c2NvcGUtYQ',
    });
    const t1 = Date.now();
    expect(await s.complete(r.id, again.token, 'out', DAY)).toBe(true);
    const done = await s.inspect.get(r.id);
    expect(done).toMatchObject({ state: 'completed', createdAt: first!.createdAt, outcomeBytes: 3 });
    near(done!.completedAt, t1);
    expect(done!.completedAt).toBeGreaterThanOrEqual(done!.createdAt);
    const listed = (await listAll(s, { limit: 1000 })).all.find((x) => x.id === r.id);
    expect(listed).toEqual(done);

    // a released marker keeps its record's creation time; taking it again is still that record
    const m = req({ scopeHash: 'c2NvcGUtYg' });
    await claimOk(s, m);
    const created = (await s.inspect.get(m.id))!.createdAt;
    await sleep(5);
    await s.release(m.id, m.token, 60_000);
    expect(await s.inspect.get(m.id)).toMatchObject({
      state: 'released',
      createdAt: created,
      completedAt: 0,
    });
    await claimOk(s, { ...m, token: uid('t') });
    expect(await s.inspect.get(m.id)).toMatchObject({
      state: 'in_progress',
      createdAt: created,
      scopeHash: 'c2NvcGUtYg',
    });

    // a claim without a scope hash, and a record created again after expiring
    const plain = req({ leaseMs: lease, ttlMs: 1 });
    await claimOk(s, plain);
    expect(await s.inspect.get(plain.id)).toMatchObject({ scopeHash: '', completedAt: 0 });
    await s.complete(plain.id, plain.token, 'x', 1);
    await sleep(lease + 100);
    expect(await s.inspect.get(plain.id)).toBeUndefined(); // expired: not live
    const t2 = Date.now();
    await claimOk(s, { ...plain, token: uid('t'), scopeHash: 'bmV3' });
    const renewed = await s.inspect.get(plain.id);
    expect(renewed).toMatchObject({ attempt: 1, completedAt: 0, scopeHash: 'bmV3' });
    near(renewed!.createdAt, t2);
    expect(renewed!.createdAt).toBeGreaterThan(first!.createdAt);
    expect(await s.inspect.get(uid())).toBeUndefined();
  });

  it('inspect.list filters by state across pages', async ({ skip }) => {
    const s = env.store();
    if (!s.inspect) return skip('the store has no inspect capability');
    const done = req();
    await claimOk(s, done);
    await s.complete(done.id, done.token, 'x', DAY);
    const marker = req();
    await claimOk(s, marker);
    await s.release(marker.id, marker.token, 60_000);
    const held = req();
    await claimOk(s, held);
    for (const state of ['completed', 'released', 'in_progress'] as const) {
      const { all } = await listAll(s, { state, limit: 4 });
      expect(all.every((r) => r.state === state)).toBe(true);
      const ids = all.map((r) => r.id);
      expect(ids.includes(done.id)).toBe(state === 'completed');
      expect(ids.includes(marker.id)).toBe(state === 'released');
      expect(ids.includes(held.id)).toBe(state === 'in_progress');
    }
  });

  it('inspect.delete removes a live record in any state (the key is new again) and answers false when nothing was there', async ({
    skip,
  }) => {
    const s = env.store();
    if (!s.inspect) return skip('the store has no inspect capability');
    const done = req();
    await claimOk(s, done);
    await s.complete(done.id, done.token, 'x', DAY);
    const held = req();
    await claimOk(s, held);
    expect(await s.inspect.delete(done.id)).toBe(true);
    expect(await s.inspect.delete(held.id)).toBe(true);
    expect(await s.get(done.id)).toBeUndefined();
    expect(await s.get(held.id)).toBeUndefined();
    expect(await s.complete(held.id, held.token, 'late', DAY)).toBe(false); // the holder is fenced off
    expect(await claimOk(s, { ...done, fingerprint: 'fp-b', token: uid('t') })).toMatchObject({
      attempt: 1,
      takeover: false,
    });
    expect(await s.inspect.delete(uid())).toBe(false);
    const gone = req();
    await claimOk(s, gone);
    await s.complete(gone.id, gone.token, 'old', 1);
    await sleep(lease + 100);
    expect(await s.inspect.delete(gone.id)).toBe(false); // expired: nothing live was there
  });

  it('inspect.list refuses a limit outside 1..1000 and an unknown state with InvalidOptionError', async ({
    skip,
  }) => {
    const s = env.store();
    if (!s.inspect) return skip('the store has no inspect capability');
    for (const bad of [0, 1001, 2.5, Number.NaN]) {
      await expect(s.inspect.list({ limit: bad })).rejects.toBeInstanceOf(InvalidOptionError);
    }
    await expect(
      s.inspect.list({ limit: 10, state: 'done' as unknown as 'completed' }),
    ).rejects.toBeInstanceOf(InvalidOptionError);
  });

  it('50 concurrent claims on one key: exactly one acquires', async () => {
    const s = env.store();
    const id = uid();
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        s.claim({ id, fingerprint: 'fp', leaseMs: 30_000, ttlMs: DAY, token: uid('t') }),
      ),
    );
    expect(results.filter((r) => r.status === 'acquired')).toHaveLength(1);
  });

  it('50 concurrent takeovers of one expired lease: exactly one wins', async () => {
    const s = env.store();
    const r = req({ leaseMs: lease });
    await claimOk(s, r);
    await sleep(lease + 100);
    const results = await Promise.all(Array.from({ length: 50 }, () => s.claim({ ...r, token: uid('t') })));
    const won = results.filter((x) => x.status === 'acquired');
    expect(won).toHaveLength(1);
    expect(won[0]).toMatchObject({ attempt: 2, takeover: true });
  });
}

/**
 * A reference model of the store contract (src/core/store.ts) and fast-check commands that run
 * random sequences of claim / complete / release / renew / get / purge / clock jumps against a
 * real store and the model side by side.
 *
 * Time: the model keeps a virtual clock. Every duration the commands use is ≡ 1000 or 2000 ms
 * (mod 5000) after the claim that set it, and the clock only moves in steps of 5000 ms, so no
 * comparison is ever within a second of its boundary: the real milliseconds that pass while a
 * sequence runs cannot change an answer. Stores with a local clock get the virtual clock itself;
 * stores on the server's clock (Postgres, Redis) move time by shifting every record's times
 * back by the step, which is the same thing seen from the records.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { Store, StoreRecord } from 'idem';
import { expect } from 'vitest';

export interface ModelRecord {
  state: 'in_progress' | 'completed';
  fingerprint: string;
  token: string;
  attempt: number;
  leaseUntil: number;
  expiresAt: number;
  outcome?: string;
}

export interface Model {
  now: number;
  records: Map<string, ModelRecord>;
  /** Every token handed out per id, newest last (for stale-token commands). */
  tokens: Map<string, string[]>;
}

/** What a command needs of the real side. */
export interface Real {
  store: Store;
  /** Moves time forward (or back) by `ms` for the store. */
  advance(ms: number): Promise<void>;
  /** False for stores that expire records themselves and purge nothing (Redis). */
  purges: boolean;
}

const live = (m: Model, id: string) => {
  const r = m.records.get(id);
  return r && r.expiresAt > m.now ? r : undefined;
};
const holds = (m: Model, id: string, token: string) => {
  const r = live(m, id);
  return token !== '' && r?.state === 'in_progress' && r.token === token ? r : undefined;
};

/** The contract's claim, on the model. */
function modelClaim(m: Model, id: string, fp: string, token: string, leaseMs: number, ttlMs: number) {
  const r = live(m, id);
  if (r && (r.state === 'completed' || r.fingerprint !== fp || r.leaseUntil > m.now)) {
    return { status: 'existing' as const, record: { ...r } };
  }
  const attempt = r ? r.attempt + 1 : 1;
  const leaseUntil = m.now + leaseMs;
  const keep = leaseUntil + Math.max(leaseMs, ttlMs);
  m.records.set(id, {
    state: 'in_progress',
    fingerprint: fp,
    token,
    attempt,
    leaseUntil,
    expiresAt: Math.max(r?.expiresAt ?? Number.NEGATIVE_INFINITY, keep),
  });
  return { status: 'acquired' as const, attempt, takeover: attempt > 1 };
}

/** Compares a record the store answered with the model's, times relative to `now`. */
function sameRecord(real: StoreRecord, model: ModelRecord, realNow: number | undefined, m: Model) {
  expect({
    state: real.state,
    fingerprint: real.fingerprint,
    token: real.token,
    attempt: real.attempt,
    outcome: real.outcome,
  }).toEqual({
    state: model.state,
    fingerprint: model.fingerprint,
    token: model.token,
    attempt: model.attempt,
    outcome: model.outcome,
  });
  if (realNow === undefined) return;
  // within a second: the real milliseconds that passed since the virtual clock last moved
  expect(Math.abs(real.expiresAt - realNow - (model.expiresAt - m.now))).toBeLessThan(1000);
  if (model.state === 'in_progress') {
    expect(Math.abs(real.leaseUntil - realNow - (model.leaseUntil - m.now))).toBeLessThan(1000);
  }
}

type Cmd = fc.AsyncCommand<Model, Real>;
const IDS = ['a', 'b'];
const LEASES = [11_000, 21_000];
const TTLS = [31_000, 61_000, 6_000];
const GUARDS = [0, 6_000];

/** Which token a command uses: the id's newest, an older one, or one never handed out. */
type TokenPick = 'newest' | 'stale' | 'unknown' | 'empty';
function pickToken(m: Model, id: string, pick: TokenPick): string {
  const all = m.tokens.get(id) ?? [];
  if (pick === 'newest') return all.at(-1) ?? 'never-issued';
  if (pick === 'stale') return all.at(-2) ?? 'never-issued';
  return pick === 'empty' ? '' : 'never-issued';
}

export function claimCmd(id: string, fp: string, leaseMs: number, ttlMs: number): Cmd {
  return {
    check: () => true,
    async run(m, r) {
      const token = randomUUID();
      m.tokens.set(id, [...(m.tokens.get(id) ?? []), token]);
      const want = modelClaim(m, id, fp, token, leaseMs, ttlMs);
      const got = await r.store.claim({ id, fingerprint: fp, token, leaseMs, ttlMs });
      expect(got.status).toBe(want.status);
      if (got.status === 'acquired' && want.status === 'acquired') {
        expect({ attempt: got.attempt, takeover: got.takeover }).toEqual({
          attempt: want.attempt,
          takeover: want.takeover,
        });
      } else if (got.status === 'existing' && want.status === 'existing') {
        sameRecord(got.record, want.record, got.now, m);
      }
    },
    toString: () => `claim(${id}, ${fp}, lease ${leaseMs}, ttl ${ttlMs})`,
  };
}

export function completeCmd(id: string, pick: TokenPick, ttlMs: number): Cmd {
  return {
    check: () => true,
    async run(m, r) {
      const token = pickToken(m, id, pick);
      const outcome = `j1:{"by":"${token}"}`;
      const rec = token === '' ? undefined : live(m, id);
      let want = false;
      if (rec && rec.token === token) {
        want = true;
        if (rec.state === 'in_progress') {
          m.records.set(id, { ...rec, state: 'completed', outcome, leaseUntil: 0, expiresAt: m.now + ttlMs });
        }
      }
      expect(await r.store.complete(id, token, outcome, ttlMs)).toBe(want);
    },
    toString: () => `complete(${id}, ${pick}, ttl ${ttlMs})`,
  };
}

export function releaseCmd(id: string, pick: TokenPick, guardMs: number): Cmd {
  return {
    check: () => true,
    async run(m, r) {
      const token = pickToken(m, id, pick);
      const rec = holds(m, id, token);
      if (rec) {
        if (rec.attempt > 1) m.records.set(id, { ...rec, token: '', leaseUntil: m.now });
        else if (guardMs > 0) {
          m.records.set(id, { ...rec, token: '', attempt: 0, leaseUntil: m.now, expiresAt: m.now + guardMs });
        } else m.records.delete(id);
      }
      expect(await r.store.release(id, token, guardMs)).toBe(rec !== undefined);
    },
    toString: () => `release(${id}, ${pick}, guard ${guardMs})`,
  };
}

export function renewCmd(id: string, pick: TokenPick, leaseMs: number): Cmd {
  return {
    check: () => true,
    async run(m, r) {
      const token = pickToken(m, id, pick);
      const rec = holds(m, id, token);
      if (rec) {
        const leaseUntil = m.now + leaseMs;
        m.records.set(id, { ...rec, leaseUntil, expiresAt: rec.expiresAt + leaseUntil - rec.leaseUntil });
      }
      const got = await r.store.renew(id, token, leaseMs);
      expect(got !== undefined).toBe(rec !== undefined);
    },
    toString: () => `renew(${id}, ${pick}, lease ${leaseMs})`,
  };
}

export function getCmd(id: string): Cmd {
  return {
    check: () => true,
    async run(m, r) {
      const want = live(m, id);
      const got = await r.store.get(id);
      expect(got === undefined).toBe(want === undefined);
      if (got && want) sameRecord(got, want, undefined, m);
    },
    toString: () => `get(${id})`,
  };
}

function purgeCmd(): Cmd {
  return {
    check: () => true,
    async run(m, r) {
      if (!r.purges) return;
      let expired = 0;
      for (const [id, rec] of m.records) {
        if (rec.expiresAt <= m.now) {
          m.records.delete(id);
          expired++;
        }
      }
      expect(await r.store.purgeExpired(1000)).toBe(expired);
    },
    toString: () => 'purgeExpired(1000)',
  };
}

export function advanceCmd(ms: number): Cmd {
  return {
    check: () => true,
    async run(m, r) {
      m.now += ms;
      await r.advance(ms);
    },
    toString: () => `advance(${ms})`,
  };
}

/**
 * Random command sequences. `backwards` adds clock jumps back in time (stores on a local
 * clock, where the jump is the app's own clock going back).
 */
export function commands(backwards: boolean) {
  const id = fc.constantFrom(...IDS);
  const pick = fc.constantFrom<TokenPick>('newest', 'newest', 'newest', 'stale', 'unknown', 'empty');
  const steps = backwards
    ? [5_000, 10_000, 25_000, 65_000, -5_000, -10_000]
    : [5_000, 10_000, 25_000, 65_000];
  return fc.commands(
    [
      fc
        .tuple(id, fc.constantFrom('A', 'A', 'B'), fc.constantFrom(...LEASES), fc.constantFrom(...TTLS))
        .map(([i, fp, l, t]) => claimCmd(i, fp, l, t)),
      fc.tuple(id, pick, fc.constantFrom(...TTLS)).map(([i, p, t]) => completeCmd(i, p, t)),
      fc.tuple(id, pick, fc.constantFrom(...GUARDS)).map(([i, p, g]) => releaseCmd(i, p, g)),
      fc.tuple(id, pick, fc.constantFrom(...LEASES)).map(([i, p, l]) => renewCmd(i, p, l)),
      id.map(getCmd),
      fc.constant(purgeCmd()),
      fc.constantFrom(...steps).map(advanceCmd),
    ],
    { maxCommands: 40, size: '+1' },
  );
}

/** A fresh model; ids are namespaced per sequence by the caller's store. */
export function emptyModel(): Model {
  return { now: 0, records: new Map(), tokens: new Map() };
}

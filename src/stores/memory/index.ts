/**
 * The in-memory store: the whole contract in one process, no persistence. For tests and for
 * single-process tools; records vanish with the process.
 *
 * @module
 */
import {
  type ClaimRequest,
  type ClaimResult,
  checkListOptions,
  guardMsOf,
  type ListedRecord,
  listedRecordOf,
  type Store,
  type StoreRecord,
} from '../../core/store.ts';
import { memoryCounters } from './counters.ts';

/** Options of {@link memoryStore}. */
export interface MemoryStoreOptions {
  /** The clock, epoch ms. Tests may inject a fake one. Defaults to `Date.now`. */
  now?: () => number;
}

/**
 * A store that keeps records in a `Map`.
 *
 * @example
 * import { createIdem, memoryStore } from 'idem';
 * const idem = createIdem({ store: memoryStore() });
 */
export function memoryStore(options: MemoryStoreOptions = {}): Store {
  const now = options.now ?? Date.now;
  const records = new Map<string, MemoryRecord>();
  const listeners = new Map<string, Set<() => void>>();

  const live = (id: string, t: number): MemoryRecord | undefined => {
    const r = records.get(id);
    return r && r.expiresAt > t ? r : undefined;
  };
  const notify = (id: string) => {
    const set = listeners.get(id);
    if (set) for (const fn of [...set]) queueMicrotask(fn);
  };
  const holder = (id: string, token: string, t: number) => {
    if (!token) return undefined; // '' marks a released record: nobody holds it
    const r = live(id, t);
    return r && r.state === 'in_progress' && r.token === token ? r : undefined;
  };

  return {
    name: 'memory',

    async claim(req: ClaimRequest): Promise<ClaimResult> {
      const t = now();
      const r = live(req.id, t);
      if (r && (r.state === 'completed' || r.fingerprint !== req.fingerprint || r.leaseUntil > t)) {
        return { status: 'existing', record: stored(r), now: t };
      }
      const attempt = r ? r.attempt + 1 : 1;
      const leaseUntil = t + req.leaseMs;
      const keep = leaseUntil + Math.max(req.leaseMs, req.ttlMs);
      records.set(req.id, {
        id: req.id,
        state: 'in_progress',
        fingerprint: req.fingerprint,
        token: req.token,
        attempt,
        leaseUntil,
        expiresAt: Math.max(r?.expiresAt ?? 0, keep),
        outcome: undefined, // every record has the same shape, so completing it in place keeps it
        // a takeover or a released marker taken again is the same record: it keeps both
        createdAt: r?.createdAt ?? t,
        completedAt: 0,
        scopeHash: r?.scopeHash ?? req.scopeHash ?? '',
      });
      // a released marker (attempt 0) is taken as attempt 1: nothing may have run
      return { status: 'acquired', attempt, leaseUntil, takeover: attempt > 1 };
    },

    async complete(id, token, outcome, ttlMs) {
      const t = now();
      if (!token) return false; // '' marks a released record: nobody holds it
      const r = live(id, t);
      if (!r || r.token !== token) return false;
      if (r.state === 'completed') return true; // this token's own outcome: never overwritten
      // in place: the store hands out copies only, so nobody else sees this object change
      r.state = 'completed';
      r.outcome = outcome;
      r.leaseUntil = 0;
      r.expiresAt = t + ttlMs;
      r.completedAt = t;
      notify(id);
      return true;
    },

    async release(id, token, guardMs) {
      const guard = guardMsOf(guardMs);
      const t = now();
      const r = holder(id, token, t);
      if (!r) return false;
      // After a takeover an earlier attempt may have run: keep the record for the next claim.
      if (r.attempt > 1) records.set(id, { ...r, token: '', leaseUntil: t });
      else if (guard > 0)
        records.set(id, { ...r, token: '', attempt: 0, leaseUntil: t, expiresAt: t + guard });
      else records.delete(id);
      notify(id);
      return true;
    },

    async renew(id, token, leaseMs) {
      const t = now();
      const r = holder(id, token, t);
      if (!r) return undefined;
      const leaseUntil = t + leaseMs;
      r.expiresAt += leaseUntil - r.leaseUntil; // the margin after the lease stays the same
      r.leaseUntil = leaseUntil;
      return leaseUntil;
    },

    async get(id) {
      const r = live(id, now());
      return r ? stored(r) : undefined;
    },

    async purgeExpired(limit) {
      const t = now();
      let n = 0;
      for (const [id, r] of records) {
        if (n >= limit) break;
        if (r.expiresAt <= t) {
          records.delete(id);
          n++;
        }
      }
      return n;
    },

    inspect: {
      async list(o) {
        checkListOptions(o);
        const t = now();
        const ids = [...records.keys()].filter((id) => o.cursor === undefined || id > o.cursor).sort();
        const page = ids.slice(0, o.limit);
        const out: ListedRecord[] = [];
        for (const id of page) {
          const r = live(id, t);
          if (r) out.push(listed(r));
        }
        const filtered = o.state ? out.filter((r) => r.state === o.state) : out;
        return { records: filtered, cursor: ids.length > o.limit ? page.at(-1) : undefined, now: t };
      },
      async get(id) {
        const r = live(id, now());
        return r && listed(r);
      },
      async delete(id) {
        const r = live(id, now());
        records.delete(id);
        if (r) notify(id);
        return r !== undefined;
      },
    },

    counters: memoryCounters(now, (id) => live(id, now())?.expiresAt),

    subscribe(id, onChange) {
      const set = listeners.get(id) ?? new Set<() => void>();
      listeners.set(id, set);
      set.add(onChange);
      return () => {
        set.delete(onChange);
        if (set.size === 0) listeners.delete(id);
      };
    },
  };
}

/** A record with what only `inspect` shows. */
interface MemoryRecord extends StoreRecord {
  createdAt: number;
  completedAt: number;
  scopeHash: string;
}

/** The record as the contract's methods answer it: a copy, without what only `inspect` shows. */
function stored(r: MemoryRecord): StoreRecord {
  const { createdAt: _c, completedAt: _d, scopeHash: _s, ...record } = r;
  return record;
}

function listed(r: MemoryRecord): ListedRecord {
  return listedRecordOf(r, {
    outcomeBytes: r.outcome === undefined ? 0 : Buffer.byteLength(r.outcome),
    createdAt: r.createdAt,
    completedAt: r.completedAt,
    scopeHash: r.scopeHash,
  });
}

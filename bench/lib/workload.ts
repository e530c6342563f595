/**
 * The work every competitor does: the same action, the same retention and lease, record ids
 * that look like the engine's (random base64url SHA-256), and the same stored outcome.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { encodeOutcome } from '../../src/core/outcome.ts';
import type { Store } from '../../src/core/store.ts';

/** Retention of completed records in every benchmark (short, so leftovers expire anyway). */
export const TTL_MS = 600_000;
export const LEASE_MS = 30_000;
/** Completed keys prepared for the replay workloads; replays cycle through them. */
export const REPLAY_KEYS = 1000;

/** The side effect: returns a small receipt, like a payment API would. */
export const send = async (n: number) => ({ receipt: `r_${n}`, amount: 1240.55 });

/** The outcome string the engine stores for `send(n)`'s result: what raw baselines write. */
export const encodedOutcome = (n: number) =>
  encodeOutcome({ kind: 'value', value: { receipt: `r_${n}`, amount: 1240.55 } });

/** A fencing token shaped like the engine's (16 random bytes, base64url). */
export const token = () => randomBytes(16).toString('base64url');

/** A hex SHA-256-sized fingerprint, for baselines compared with calls that pass `input`. */
export const FINGERPRINT = randomBytes(32).toString('hex');

/**
 * `n` random record ids shaped like the engine's (43 base64url characters), so a raw baseline
 * inserts into the same random places of an index as the store does.
 */
export function randomIds(n: number): string[] {
  const bytes = randomBytes(n * 32);
  const ids = new Array<string>(n);
  for (let i = 0; i < n; i++) ids[i] = bytes.toString('base64url', i * 32, i * 32 + 32);
  return ids;
}

/** Reads `ids[i]`, failing loudly (an error in the table) when a run outgrows the prepared ids. */
export function idAt(ids: string[], i: number): string {
  const id = ids[i];
  if (id === undefined) throw new Error(`benchmark ran out of prepared ids (${ids.length})`);
  return id;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The claim and complete calls a fresh `idem.run` makes, made directly on the store. */
export interface StoreOnly {
  fresh(id: string): Promise<void>;
  replay(id: string): Promise<void>;
}

/**
 * The store API without the engine: `claim` + `complete` for a fresh id, `claim` of a
 * completed id for a replay. Sits between the raw baseline and `idem.run` in the tables, so
 * the gap splits into store cost and engine cost.
 */
export function storeOnly(store: Store, fingerprint: string): StoreOnly {
  const tok = token();
  const outcome = encodedOutcome(123456);
  const claim = (id: string) =>
    store.claim({ id, fingerprint, leaseMs: LEASE_MS, ttlMs: TTL_MS, token: tok });
  return {
    async fresh(id) {
      if ((await claim(id)).status !== 'acquired') throw new Error('store-only: a fresh id was not acquired');
      if (!(await store.complete(id, tok, outcome, TTL_MS))) throw new Error('store-only: complete failed');
    },
    async replay(id) {
      if ((await claim(id)).status !== 'existing') throw new Error('store-only: a completed id was acquired');
    },
  };
}

/** Table name of the store-API-only rows. */
export const API = 'store API only, no engine';

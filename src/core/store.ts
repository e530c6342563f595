/**
 * The store contract: the six operations every backend implements (plus three optional: subscribe, close, inspect). The engine owns all
 * policy (fingerprint comparison, waiting, failure handling); a store only makes each state
 * transition atomic, fenced by the token, and timed by its own clock.
 *
 * ```
 * ABSENT ──claim──▶ IN_PROGRESS {token, leaseUntil, fingerprint, attempt, expiresAt}
 * IN_PROGRESS ──complete(token)──▶ COMPLETED {outcome, expiresAt = now + ttl}
 * IN_PROGRESS, attempt 1 ──release(token)──▶ ABSENT
 * IN_PROGRESS, attempt 1 ──release(token, guardMs)──▶ RELEASED {token '', attempt 0, expiresAt = now + guardMs}
 * RELEASED, same fingerprint ──claim──▶ IN_PROGRESS {new token, attempt 1, takeover false}
 * IN_PROGRESS, attempt > 1 ──release(token)──▶ IN_PROGRESS {token '', leaseUntil = now}
 * IN_PROGRESS, lease over, same fingerprint ──claim──▶ IN_PROGRESS {new token, attempt+1}
 * any record past expiresAt ──▶ ABSENT (claim overwrites it; purgeExpired deletes it)
 * ```
 *
 * An in-progress record is kept until leaseUntil + max(leaseMs, ttlMs): the claim sets
 * expiresAt so, and renew moves expiresAt by exactly as much as it moves leaseUntil. A holder
 * that dies therefore leaves its record for a full retention margin after its lease, and the
 * next claim learns that the action may have run (attempt + 1, takeover) instead of starting
 * again at attempt 1.
 *
 * Run `testStore()` from `idem/testing` against your own store to check it keeps the contract.
 *
 * @module
 */

import type { StoreCounters } from './counters.ts';
import { InvalidOptionError } from './errors.ts';

/** The longest guard window a store accepts (the Redis scripts' integer range). */
export const MAX_GUARD_MS = 1e15;

/**
 * `release`'s `guardMs` as whole milliseconds (absent: 0). Anything that is not a finite number
 * from 0 to {@link MAX_GUARD_MS} is an `InvalidOptionError`, the same in every store, and the
 * holder keeps the record.
 *
 * @example
 * const guard = guardMsOf(guardMs); // 60000, or 0 to delete on attempt 1
 */
export function guardMsOf(guardMs: number | undefined): number {
  if (guardMs === undefined) return 0;
  const ms = Math.ceil(guardMs);
  if (!(ms >= 0 && ms <= MAX_GUARD_MS)) {
    throw new InvalidOptionError(`guardMs must be a finite number >= 0, got ${guardMs}`);
  }
  return ms;
}

/** A record as stored. Every time is epoch milliseconds on the store's clock. */
export interface StoreRecord {
  /** The record id: a hash of scope + key, never the raw key. */
  id: string;
  state: 'in_progress' | 'completed';
  /** Fixed at claim time; '' when the caller gave no input. */
  fingerprint: string;
  /**
   * The fencing token of the current (or completing) holder; '' for an in-progress record
   * whose holder released it after a takeover (nobody holds it, the next claim takes over).
   */
  token: string;
  /**
   * 1 for the first holder, +1 on every takeover of an expired lease. 0 marks a released
   * marker: attempt 1 released with a guard window, which keeps the fingerprint (another
   * input is refused) until it expires; the next same-fingerprint claim is attempt 1 again.
   */
  attempt: number;
  /** While in progress: when the holder's lease runs out (or ran out). 0 once completed. */
  leaseUntil: number;
  /** When the record stops counting and the key is new again. */
  expiresAt: number;
  /** The serialized outcome once completed; undefined while in progress. */
  outcome?: string | undefined;
}

/** What `claim` is asked to do. */
export interface ClaimRequest {
  id: string;
  fingerprint: string;
  /** Lease length for the new holder. */
  leaseMs: number;
  /**
   * Retention while in progress: the record is kept until leaseUntil + max(leaseMs, ttlMs)
   * (a takeover never shortens it), then it is purgeable even if nobody took it over.
   */
  ttlMs: number;
  /** A fresh, unique, non-empty fencing token chosen by the caller ('' marks a released record). */
  token: string;
  /**
   * Optional: the hash of the scope the record id was made under (`scopeHashOf` in keys.ts; '' or
   * absent when unscoped), kept with the record for `inspect` so operators can list one
   * tenant's records. Never read by the transitions; a store that has no `inspect` may ignore it.
   */
  scopeHash?: string | undefined;
}

/**
 * The answer to `claim`, in one round trip: either ownership, or the record that stands in
 * the way (with the store's current time, so lease arithmetic never uses the app's clock).
 */
export type ClaimResult =
  | {
      status: 'acquired';
      attempt: number;
      leaseUntil: number;
      /** True when this claim took over an expired lease: the action may already have run. */
      takeover: boolean;
    }
  | { status: 'existing'; record: StoreRecord; now: number };

/**
 * A backend for idem. Implementations must make each method atomic; see the module docs for
 * the transitions. Methods reject with `StoreUnavailableError` when the backend cannot
 * answer, never hang past their own timeout.
 *
 * @example
 * const store: Store = memoryStore();
 * const r = await store.claim({ id, fingerprint: '', leaseMs: 30_000, ttlMs: 86_400_000, token });
 */
export interface Store {
  /** A short name for logs and metrics: 'memory', 'sqlite', 'postgres', 'redis'. */
  readonly name: string;
  /**
   * Take the key when it is absent or expired (attempt 1), or when it is in progress with an
   * expired lease and the same fingerprint (a takeover: attempt + 1). Otherwise return the
   * record. Never overwrites a live record with another fingerprint. Sets expiresAt to
   * leaseUntil + max(leaseMs, ttlMs); a takeover keeps the old expiresAt when that is later.
   */
  claim(req: ClaimRequest): Promise<ClaimResult>;
  /**
   * Store the outcome and keep the record until now + ttlMs, only if `token` still holds
   * it. Completing again with the same token is a no-op that answers true. False when
   * another holder took over or the record is gone.
   */
  complete(id: string, token: string, outcome: string, ttlMs: number): Promise<boolean>;
  /**
   * Give up the in-progress record, only if `token` still holds it; false otherwise. On
   * attempt 1 the record is deleted and the key is new again: only the releasing holder ran
   * the action, and it knows how that ended. On a later attempt an earlier holder's lease ended mid-action, so the
   * effect may have happened: the record stays in progress with its lease ended (leaseUntil =
   * now, token '', expiresAt unchanged) and the next same-fingerprint claim is a takeover with
   * attempt + 1. Another fingerprint still finds the record until it expires. Either way,
   * subscribers are notified.
   *
   * `guardMs` > 0 on attempt 1 keeps a released marker instead of deleting: in progress, token
   * '', attempt 0, leaseUntil = now, expiresAt = now + guardMs. A claim with the same
   * fingerprint takes it as attempt 1 (not a takeover); another fingerprint finds the record
   * (the engine answers a mismatch) until the marker expires. Later attempts ignore `guardMs`.
   * A `guardMs` that is not a finite number >= 0 rejects with `InvalidOptionError` (see
   * {@link guardMsOf}) and changes nothing.
   */
  release(id: string, token: string, guardMs?: number): Promise<boolean>;
  /**
   * Set the lease to now + leaseMs, only if `token` still holds the in-progress record, and
   * move expiresAt by the same amount (expiresAt + newLeaseUntil − leaseUntil), so the
   * retention margin after the lease stays what the claim made it. Answers the new
   * leaseUntil, or undefined when the lease was lost.
   */
  renew(id: string, token: string, leaseMs: number): Promise<number | undefined>;
  /** The record, or undefined when absent or expired. */
  get(id: string): Promise<StoreRecord | undefined>;
  /** Delete up to `limit` expired records; answers how many were deleted. */
  purgeExpired(limit: number): Promise<number>;
  /**
   * Optional: call `onChange` soon after the record `id` is completed or released, so
   * waiters wake without polling. Returns an unsubscribe function. The engine subscribes
   * after a claim found the record held; a store may notify only for such records (Postgres
   * does), and may take a moment to start listening. Polling remains the engine's fallback.
   */
  subscribe?(id: string, onChange: () => void): () => void;
  /** Optional: release connections and timers the store owns. */
  close?(): Promise<void>;
  /**
   * Optional (operators' tools: `idem keys list`, `idem keys delete`, `idem stats`): page
   * through live records in id order, never returning outcomes. See {@link StoreInspect}.
   */
  inspect?: StoreInspect;
  /**
   * Optional (`idem stats`, `idem keys show`): replays, conflicts, takeovers and LLM savings kept
   * in the store, written in batches by `createStatsRecorder`. See {@link StoreCounters}.
   */
  counters?: StoreCounters;
}

/** The state an operator sees: a released marker (token '', attempt 0) is 'released'. */
export type ListedState = 'in_progress' | 'completed' | 'released';

/** What `inspect.list` is asked for. */
export interface ListOptions {
  /** Only records in this state. */
  state?: ListedState | undefined;
  /** The `cursor` of the previous page; absent for the first page. */
  cursor?: string | undefined;
  /** At most this many records are examined for this page (1 to 1000). */
  limit: number;
}

/** One live record as listed: everything but the outcome, whose size is given instead. */
export interface ListedRecord {
  id: string;
  state: ListedState;
  attempt: number;
  /** 0 once completed. */
  leaseUntil: number;
  expiresAt: number;
  fingerprint: string;
  /** Bytes of the stored outcome (UTF-8 as stored; 0 while in progress). */
  outcomeBytes: number;
  /**
   * When the record was created (the claim of attempt 1 on a key that was absent or expired), on
   * the store's clock; kept through takeovers, renewals, releases into a marker and completion.
   * 0 when unknown (a record written before the store kept it).
   */
  createdAt: number;
  /** When the record was completed, on the store's clock; 0 while it is not. */
  completedAt: number;
  /** The `scopeHash` its claim carried; '' when none (or unknown). */
  scopeHash: string;
}

/** A page of `inspect.list`. */
export interface ListPage {
  records: ListedRecord[];
  /** Pass it back for the next page; undefined when the scan is over. A page may be short (or empty) and still have a cursor. */
  cursor?: string | undefined;
  /** The store's clock when the page was read, epoch ms. */
  now: number;
}

/**
 * The optional inspection capability: list live records page by page and delete one. Stats
 * (counts by state, bytes) are computed by paging through `list` (see `storeStats` in the CLI).
 *
 * @example
 * let cursor: string | undefined;
 * do {
 *   const page = await store.inspect!.list({ state: 'in_progress', cursor, limit: 100 });
 *   for (const r of page.records) console.log(r.id, r.attempt);
 *   cursor = page.cursor;
 * } while (cursor);
 */
export interface StoreInspect {
  /**
   * Live (unexpired) records in a stable order, about `limit` examined per page, filtered by
   * `state`. Redis's SCAN looks further while a page has found fewer than `limit` (its records
   * may be a small part of a shared server), so its pages may hold a few more.
   */
  list(options: ListOptions): Promise<ListPage>;
  /** The live record `id` as `list` would show it (`idem keys show`), or undefined. */
  get(id: string): Promise<ListedRecord | undefined>;
  /** Delete the record `id` whatever its state; true when a live record was there. */
  delete(id: string): Promise<boolean>;
}

/**
 * The listed state of a stored record.
 *
 * @example
 * listedStateOf({ state: 'in_progress', token: '', attempt: 0 }); // 'released'
 */
export function listedStateOf(r: Pick<StoreRecord, 'state' | 'token' | 'attempt'>): ListedState {
  return r.state === 'completed'
    ? 'completed'
    : r.token === '' && r.attempt === 0
      ? 'released'
      : 'in_progress';
}

/**
 * A record as `inspect` shows it: its listed state and the facts only `inspect` reads.
 *
 * @example
 * listedRecordOf(record, { outcomeBytes: 10, createdAt: 1796170000000, completedAt: 0, scopeHash: '' });
 */
export function listedRecordOf(
  r: Pick<StoreRecord, 'id' | 'state' | 'token' | 'attempt' | 'leaseUntil' | 'expiresAt' | 'fingerprint'>,
  more: Pick<ListedRecord, 'outcomeBytes' | 'createdAt' | 'completedAt' | 'scopeHash'>,
): ListedRecord {
  return {
    id: r.id,
    state: listedStateOf(r),
    attempt: r.attempt,
    leaseUntil: r.leaseUntil,
    expiresAt: r.expiresAt,
    fingerprint: r.fingerprint,
    ...more,
  };
}

/**
 * Checks `list` options where they enter a store: limit 1..1000, a known state.
 *
 * @example
 * checkListOptions({ limit: 100 });
 */
export function checkListOptions(o: ListOptions): void {
  if (!Number.isInteger(o.limit) || o.limit < 1 || o.limit > 1000) {
    throw new InvalidOptionError(`list: limit must be an integer from 1 to 1000, got ${o.limit}`);
  }
  if (o.state !== undefined && !['in_progress', 'completed', 'released'].includes(o.state)) {
    throw new InvalidOptionError(`list: state must be in_progress, completed or released, got ${o.state}`);
  }
}

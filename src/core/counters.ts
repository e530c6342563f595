/**
 * The optional `counters` capability of a store: replays, conflicts, takeovers and LLM savings
 * kept in the store, so `idem stats` and `idem keys show` can report them after the process that
 * counted them is gone. Counts are batched in memory by a recorder (src/core/stats-recorder.ts)
 * and written in one `add` every few seconds: the request path never waits on them.
 *
 * Two kinds of rows, both keyed by hashes or times, never by a raw key:
 * - per-minute buckets `{ minute, name, value }`, kept {@link BUCKET_RETENTION_MS} (35 days);
 * - per-record replay counts `{ id, replays, lastReplayAt }`, kept until the later of the
 *   record's own expiry (where the store can read it in the same write) and
 *   {@link RECORD_RETENTION_MS} (7 days) after the last replay.
 *
 * @module
 */
import { InvalidOptionError } from './errors.ts';

/** What is counted. Money is in micro-USD so every value stays an integer. */
export const COUNTER_NAMES = [
  'replays',
  'conflicts',
  'mismatches',
  'takeovers',
  'waits',
  'releases',
  'lease_lost',
  'llm_calls_saved',
  'llm_tokens_saved_input',
  'llm_tokens_saved_cached',
  'llm_tokens_saved_output',
  'llm_cost_saved_microusd',
] as const;

/** One counter's name. */
export type CounterName = (typeof COUNTER_NAMES)[number];

/** Totals by counter name (0 for a counter nothing was added to). */
export type CounterTotals = Record<CounterName, number>;

/** One minute's count of one counter. */
export interface CounterBucket {
  /** Epoch ms, a whole minute (a multiple of 60 000). */
  minute: number;
  name: CounterName;
  /** How much to add: a non-negative integer. */
  value: number;
}

/** Replays of one record to add. */
export interface RecordReplays {
  /** The record id (a hash of scope + key). */
  id: string;
  /** How many replays to add: a positive integer. */
  replays: number;
  /** Epoch ms of the latest of these replays. */
  lastReplayAt: number;
}

/** What one `add` writes. */
export interface CounterBatch {
  buckets: CounterBucket[];
  records: RecordReplays[];
}

/** What `counters.record(id)` answers. */
export interface RecordCounts {
  replays: number;
  /** Epoch ms of the last replay counted. */
  lastReplayAt: number;
}

/**
 * The optional counters capability (`store.counters`). Every built-in store has it; a custom
 * store may leave it out, and then nothing is persisted (`idem stats` says so).
 *
 * @example
 * await store.counters!.add({ buckets: [{ minute: 1_764_000_000_000, name: 'replays', value: 3 }], records: [] });
 * const totals = await store.counters!.read({ since: Date.now() - 3_600_000 });
 * totals.replays; // 3 if that minute is within the last hour
 */
export interface StoreCounters {
  /**
   * Adds the batch, in one round trip (one transaction or pipeline) where the store allows.
   * Buckets older than the retention are ignored. Rejects (`StoreUnavailableError`) when it could
   * not write; an `InvalidOptionError` for a malformed batch (see {@link checkCounterBatch}).
   */
  add(batch: CounterBatch): Promise<void>;
  /** Totals over the buckets whose minute is at or after `since` rounded down to the minute (all kept buckets without it). */
  read(options?: { since?: number | undefined }): Promise<CounterTotals>;
  /** The replays counted for one record, or undefined when none are kept. */
  record(id: string): Promise<RecordCounts | undefined>;
  /**
   * Drops the replay count of one record (`idem keys delete`: the key is new again, so a record
   * written under it later starts from 0). Nothing kept is not an error. Optional, so counters
   * written for an older idem still fit: without it a deleted key's count lives out its retention.
   */
  forget?(id: string): Promise<void>;
}

/** One minute, in ms. */
export const MINUTE_MS = 60_000;
/** How long per-minute buckets are kept: 35 days. */
export const BUCKET_RETENTION_MS = 35 * 86_400_000;
/** The least a per-record replay count is kept after its last replay: 7 days. */
export const RECORD_RETENTION_MS = 7 * 86_400_000;

/**
 * Epoch ms rounded down to the minute.
 *
 * @example
 * minuteOf(1_764_000_059_999) // 1_764_000_000_000
 */
export function minuteOf(ms: number): number {
  return Math.floor(ms / MINUTE_MS) * MINUTE_MS;
}

/**
 * Every counter at 0.
 *
 * @example
 * const totals = zeroTotals(); totals.replays += 2;
 */
export function zeroTotals(): CounterTotals {
  return Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as CounterTotals;
}

const KNOWN = new Set<string>(COUNTER_NAMES);

/**
 * Checks a batch where it enters a store, and merges duplicate buckets and records (so a store
 * can upsert each row once, in a stable order: minute then name, id). Buckets older than the
 * retention at `now` are left out. A malformed batch is an `InvalidOptionError`.
 *
 * @example
 * const { buckets, records } = normalizeBatch(batch, Date.now());
 */
export function normalizeBatch(batch: CounterBatch, now: number): CounterBatch {
  if (!batch || !Array.isArray(batch.buckets) || !Array.isArray(batch.records)) {
    throw new InvalidOptionError('counters.add: the batch must be { buckets: [], records: [] }');
  }
  const buckets = new Map<string, CounterBucket>();
  for (const b of batch.buckets) {
    if (!KNOWN.has(b?.name)) {
      throw new InvalidOptionError(`counters.add: unknown counter ${JSON.stringify(b?.name)}`);
    }
    if (!Number.isSafeInteger(b.minute) || b.minute % MINUTE_MS !== 0 || b.minute < 0) {
      throw new InvalidOptionError(
        `counters.add: minute must be epoch ms of a whole minute, got ${b.minute}`,
      );
    }
    if (!Number.isSafeInteger(b.value) || b.value < 0) {
      throw new InvalidOptionError(`counters.add: value must be an integer >= 0, got ${b.value}`);
    }
    if (b.value === 0 || b.minute < now - BUCKET_RETENTION_MS) continue;
    const k = `${b.minute}\0${b.name}`;
    const seen = buckets.get(k);
    if (seen) seen.value += b.value;
    else buckets.set(k, { minute: b.minute, name: b.name, value: b.value });
  }
  const records = new Map<string, RecordReplays>();
  for (const r of batch.records) {
    if (typeof r?.id !== 'string' || r.id === '' || r.id.length > 1024) {
      throw new InvalidOptionError('counters.add: a record id must be a string of 1 to 1024 characters');
    }
    if (!Number.isSafeInteger(r.replays) || r.replays < 1) {
      throw new InvalidOptionError(`counters.add: replays must be an integer >= 1, got ${r.replays}`);
    }
    if (!Number.isSafeInteger(r.lastReplayAt) || r.lastReplayAt < 0) {
      throw new InvalidOptionError(`counters.add: lastReplayAt must be epoch ms, got ${r.lastReplayAt}`);
    }
    const seen = records.get(r.id);
    if (seen) {
      seen.replays += r.replays;
      seen.lastReplayAt = Math.max(seen.lastReplayAt, r.lastReplayAt);
    } else records.set(r.id, { id: r.id, replays: r.replays, lastReplayAt: r.lastReplayAt });
  }
  return {
    buckets: [...buckets.values()].sort((a, b) => a.minute - b.minute || (a.name < b.name ? -1 : 1)),
    records: [...records.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
  };
}

/**
 * The first minute `read` counts: `since` rounded down to the minute, never before the retention.
 *
 * @example
 * const from = readFrom(Date.now() - 3_600_000, Date.now());
 */
export function readFrom(since: number | undefined, now: number): number {
  if (since !== undefined && !Number.isFinite(since)) {
    throw new InvalidOptionError(`counters.read: since must be epoch ms, got ${since}`);
  }
  return minuteOf(Math.max(since ?? 0, now - BUCKET_RETENTION_MS));
}

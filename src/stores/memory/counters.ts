/**
 * The memory store's `counters`: two maps, gone with the process like its records.
 *
 * @module
 */
import {
  BUCKET_RETENTION_MS,
  type CounterName,
  normalizeBatch,
  RECORD_RETENTION_MS,
  readFrom,
  type StoreCounters,
  zeroTotals,
} from '../../core/counters.ts';

/**
 * Counters in memory. `expiresAt(id)` is the live record's expiry, so a replay count is kept as
 * long as its record (and at least 7 days after the last replay).
 *
 * @example
 * const counters = memoryCounters(Date.now, (id) => records.get(id)?.expiresAt);
 */
export function memoryCounters(
  now: () => number,
  expiresAt: (id: string) => number | undefined,
): StoreCounters {
  /** minute → name → value */
  const buckets = new Map<number, Map<CounterName, number>>();
  const records = new Map<string, { replays: number; lastReplayAt: number; expiresAt: number }>();
  const prune = (t: number) => {
    for (const minute of buckets.keys()) if (minute < t - BUCKET_RETENTION_MS) buckets.delete(minute);
    for (const [id, r] of records) if (r.expiresAt <= t) records.delete(id);
  };
  return {
    async add(batch) {
      const t = now();
      const { buckets: add, records: replays } = normalizeBatch(batch, t);
      for (const b of add) {
        const minute = buckets.get(b.minute) ?? new Map<CounterName, number>();
        buckets.set(b.minute, minute);
        minute.set(b.name, (minute.get(b.name) ?? 0) + b.value);
      }
      for (const r of replays) {
        const seen = records.get(r.id);
        const keep = Math.max(
          r.lastReplayAt + RECORD_RETENTION_MS,
          expiresAt(r.id) ?? 0,
          seen?.expiresAt ?? 0,
        );
        records.set(r.id, {
          replays: (seen && seen.expiresAt > t ? seen.replays : 0) + r.replays,
          lastReplayAt: Math.max(seen?.lastReplayAt ?? 0, r.lastReplayAt),
          expiresAt: keep,
        });
      }
      prune(t);
    },
    async read(options = {}) {
      const t = now();
      const from = readFrom(options.since, t);
      const totals = zeroTotals();
      for (const [minute, names] of buckets) {
        if (minute < from) continue;
        for (const [name, value] of names) totals[name] += value;
      }
      return totals;
    },
    async record(id) {
      const r = records.get(id);
      return r && r.expiresAt > now() ? { replays: r.replays, lastReplayAt: r.lastReplayAt } : undefined;
    },
    async forget(id) {
      records.delete(id);
    },
  };
}

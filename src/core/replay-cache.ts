/**
 * An optional in-process cache of completed outcomes, so hot keys replay without a store round
 * trip. It is safe because a completed record never changes before it expires: no claim, complete
 * or release can touch it (the store contract). Entries are served only until a margin before
 * the record's expiry, converted from the store's clock with the offset seen when it was read.
 *
 * @module
 */
import { InvalidOptionError } from './errors.ts';

/** Options of the replay cache (`createIdem({ replayCache })`). */
export interface ReplayCacheOptions {
  /** Most entries kept; least recently used go first. Default 10 000. */
  maxEntries?: number;
  /** Most bytes of stored outcomes kept. Default 32 MiB. */
  maxBytes?: number;
  /** Stop serving an entry this long before its record expires. Default 1000 ms. */
  marginMs?: number;
}

interface Entry {
  fingerprint: string;
  outcome: string;
  attempt: number;
  /** Local clock: serve until then. */
  until: number;
}

export interface ReplayCache {
  get(recordId: string): Entry | undefined;
  /** `expiresAt` and `storeNow` are on the store's clock, read together. */
  set(recordId: string, entry: Omit<Entry, 'until'>, expiresAt: number, storeNow: number): void;
}

/** Builds the cache, or undefined when disabled. */
export function createReplayCache(
  options: ReplayCacheOptions | boolean | undefined,
): ReplayCache | undefined {
  if (!options) return undefined;
  const o = options === true ? {} : options;
  const maxEntries = o.maxEntries ?? 10_000;
  const maxBytes = o.maxBytes ?? 32 * 1024 * 1024;
  const marginMs = o.marginMs ?? 1000;
  for (const [name, v] of Object.entries({ maxEntries, maxBytes, marginMs })) {
    if (!Number.isInteger(v) || v < 0)
      throw new InvalidOptionError(`replayCache.${name} must be a whole number ≥ 0`);
  }
  const entries = new Map<string, Entry>();
  let bytes = 0;
  const drop = (id: string, e: Entry) => {
    entries.delete(id);
    bytes -= e.outcome.length * 2;
  };

  return {
    get(id) {
      const e = entries.get(id);
      if (!e) return undefined;
      if (Date.now() >= e.until) {
        drop(id, e);
        return undefined;
      }
      entries.delete(id); // move to the most recently used end
      entries.set(id, e);
      return e;
    },
    set(id, entry, expiresAt, storeNow) {
      const size = entry.outcome.length * 2;
      const until = Date.now() + (expiresAt - storeNow) - marginMs;
      if (size > maxBytes || until <= Date.now()) return;
      const old = entries.get(id);
      if (old) drop(id, old);
      entries.set(id, { ...entry, until });
      bytes += size;
      for (const [oldest, e] of entries) {
        if (entries.size <= maxEntries && bytes <= maxBytes) break;
        drop(oldest, e);
      }
    },
  };
}

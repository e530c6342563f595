/**
 * The stats recorder: counts engine events and LLM savings in memory and writes them to the
 * store's `counters` (src/core/counters.ts) in one batch every `flushMs`, so a replay stays one
 * store read. A failed write keeps its counts for the next one; nothing it does ever throws
 * into a request.
 *
 * @module
 */
import {
  BUCKET_RETENTION_MS,
  type CounterBatch,
  type CounterName,
  MINUTE_MS,
  minuteOf,
  type RecordReplays,
  type StoreCounters,
} from './counters.ts';
import { InvalidOptionError } from './errors.ts';
import type { IdemEvent } from './events.ts';
import type { Store } from './store.ts';

/** What one suppressed duplicate LLM call saved (the `Saved` of `idem/openai`'s savings tracker). */
export interface SavedCall {
  tokens: { input: number; cached: number; output: number };
  /** USD; undefined when the model is not in the price table. */
  costUsd: number | undefined;
}

/** Options of {@link createStatsRecorder}. */
export interface StatsRecorderOptions {
  /** How often counts are written, in ms. Default 5000. */
  flushMs?: number;
  /** Records whose replays are held between writes; past it the one counted first is dropped (and counted). Default 10 000. */
  maxRecords?: number;
  /** Told when a timed write fails (the counts are kept) or the last one on close (they are lost). Default: one process warning. */
  onError?: (error: unknown) => void;
  /** The clock, epoch ms. Default `Date.now`. */
  now?: () => number;
}

/** A running recorder. */
export interface StatsRecorder {
  /** Pass as `createIdem({ onEvent })`, or call from your own `onEvent`. Never throws. */
  onEvent(event: IdemEvent): void;
  /** Counts one suppressed duplicate LLM call (a savings tracker's `onSaved` listener). Never throws. */
  llmSaved(saved: SavedCall): void;
  /** Writes what is counted now; rejects when the store did not take it (the counts are kept). */
  flush(): Promise<void>;
  /** Stops the timer and writes what is left; never rejects (a failure goes to `onError`). */
  close(): Promise<void>;
  /** Per-record replay entries dropped because more than `maxRecords` records waited for a write. */
  readonly droppedRecords: number;
}

const EVENT_COUNTERS: Partial<Record<IdemEvent['type'], CounterName>> = {
  replayed: 'replays',
  in_progress: 'conflicts',
  mismatch: 'mismatches',
  takeover: 'takeovers',
  wait: 'waits',
  released: 'releases',
  lease_lost: 'lease_lost',
};

/** Records sent in one `add` (DynamoDB writes each as its own request). */
const RECORDS_PER_ADD = 100;

let warned = false;

/**
 * A recorder writing into the store's `counters`. A store without them is an `InvalidOptionError`.
 *
 * @example
 * import { createIdem, createStatsRecorder } from 'idem';
 * import { sqliteStore } from 'idem/sqlite';
 * const store = sqliteStore();
 * const stats = createStatsRecorder(store);
 * const idem = createIdem({ store, onEvent: stats.onEvent });
 * process.on('beforeExit', () => stats.close());
 */
export function createStatsRecorder(store: Store, options: StatsRecorderOptions = {}): StatsRecorder {
  const counters: StoreCounters | undefined = store?.counters;
  if (!counters) {
    throw new InvalidOptionError(
      `createStatsRecorder: the ${store?.name ?? 'given'} store keeps no counters (it has no counters capability)`,
    );
  }
  if (options.flushMs !== undefined && !(Number.isFinite(options.flushMs) && options.flushMs > 0)) {
    throw new InvalidOptionError(
      `createStatsRecorder: flushMs must be a positive number of ms, got ${options.flushMs}`,
    );
  }
  if (options.maxRecords !== undefined && !(Number.isInteger(options.maxRecords) && options.maxRecords > 0)) {
    throw new InvalidOptionError(
      `createStatsRecorder: maxRecords must be a positive integer, got ${options.maxRecords}`,
    );
  }
  const flushMs = options.flushMs ?? 5000;
  const maxRecords = options.maxRecords ?? 10_000;
  const now = options.now ?? Date.now;
  const report =
    options.onError ??
    ((error: unknown) => {
      if (warned) return;
      warned = true;
      const message = error instanceof Error ? error.message : String(error);
      process.emitWarning(`idem: stats not written to the store yet (${message}); kept for the next try`, {
        code: 'IDEM_STATS_FLUSH',
      });
    });
  /** minute → name → value */
  let buckets = new Map<number, Map<CounterName, number>>();
  /** id → replays, in the order each record was first counted since the last write */
  let records = new Map<string, RecordReplays>();
  let microUsd = 0; // fractions of a micro-USD carried to the next count
  let droppedRecords = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  /** The current minute's counts, found once per minute instead of once per event. */
  let minute = -1;
  let current = new Map<CounterName, number>();
  const count = (name: CounterName, value: number, at: number) => {
    if (!(value > 0)) return;
    if (at < minute || at >= minute + MINUTE_MS || buckets.get(minute) !== current) {
      minute = minuteOf(at);
      current = buckets.get(minute) ?? new Map<CounterName, number>();
      buckets.set(minute, current);
    }
    current.set(name, (current.get(name) ?? 0) + value);
    schedule();
  };
  const schedule = () => {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      flush().catch(report);
    }, flushMs);
    timer.unref();
  };
  const keep = (id: string, replays: number, at: number) => {
    const seen = records.get(id);
    if (seen) {
      seen.replays += replays;
      if (at > seen.lastReplayAt) seen.lastReplayAt = at;
      return;
    }
    if (records.size >= maxRecords) {
      records.delete(records.keys().next().value as string);
      droppedRecords++;
    }
    records.set(id, { id, replays, lastReplayAt: at });
  };

  /** Takes what is counted now, leaving empty maps behind. */
  const take = (): CounterBatch => {
    const batch: CounterBatch = {
      buckets: [...buckets].flatMap(([minute, names]) =>
        [...names].map(([name, value]) => ({ minute, name, value })),
      ),
      records: [...records.values()],
    };
    buckets = new Map();
    records = new Map();
    return batch;
  };
  /** Puts a batch that was not written back, in front of what was counted meanwhile. */
  const giveBack = (batch: CounterBatch) => {
    const later = records;
    records = new Map();
    for (const r of batch.records) keep(r.id, r.replays, r.lastReplayAt);
    for (const r of later.values()) keep(r.id, r.replays, r.lastReplayAt);
    const oldest = now() - BUCKET_RETENTION_MS; // a long outage does not grow memory past the retention
    for (const b of batch.buckets) {
      if (b.minute < oldest) continue;
      const names = buckets.get(b.minute) ?? new Map<CounterName, number>();
      buckets.set(b.minute, names);
      names.set(b.name, (names.get(b.name) ?? 0) + b.value);
    }
    schedule();
  };

  const write = async () => {
    const batch = take();
    for (let i = 0; i === 0 || i < batch.records.length; i += RECORDS_PER_ADD) {
      const part = {
        buckets: i === 0 ? batch.buckets : [],
        records: batch.records.slice(i, i + RECORDS_PER_ADD),
      };
      if (part.buckets.length === 0 && part.records.length === 0) continue;
      try {
        await counters.add(part);
      } catch (error) {
        giveBack({ buckets: part.buckets, records: batch.records.slice(i) });
        throw error;
      }
    }
  };
  /** Writes run one at a time: a flush during a write waits for it, then writes what came meanwhile. */
  let chain: Promise<void> = Promise.resolve();
  const flush = (): Promise<void> => {
    clearTimeout(timer);
    timer = undefined;
    const next = chain.then(write);
    chain = next.catch(() => {});
    return next;
  };

  return {
    onEvent(event) {
      const name = EVENT_COUNTERS[event?.type];
      if (!name) return;
      const at = now();
      count(name, 1, at);
      if (event.type === 'replayed') keep(event.recordId, 1, at);
    },
    llmSaved(saved) {
      const at = now();
      count('llm_calls_saved', 1, at);
      const t = saved?.tokens;
      if (t) {
        count('llm_tokens_saved_input', whole(t.input), at);
        count('llm_tokens_saved_cached', whole(t.cached), at);
        count('llm_tokens_saved_output', whole(t.output), at);
      }
      if (typeof saved?.costUsd === 'number' && saved.costUsd > 0 && Number.isFinite(saved.costUsd)) {
        microUsd += saved.costUsd * 1e6;
        const micro = Math.floor(microUsd + 1e-6);
        microUsd = Math.max(0, microUsd - micro);
        count('llm_cost_saved_microusd', micro, at);
      }
    },
    flush,
    async close() {
      closed = true;
      try {
        await flush();
      } catch (error) {
        clearTimeout(timer);
        timer = undefined;
        report(error);
      }
    },
    get droppedRecords() {
      return droppedRecords;
    },
  };
}

const whole = (n: number) => (Number.isFinite(n) && n > 0 ? Math.round(n) : 0);

/**
 * `idem keys list`, `idem keys delete` and `idem stats`: page through a store's live records
 * with its optional `inspect` capability (src/core/store.ts). Outcomes are never read out, only
 * their sizes.
 *
 * @module
 */
import type { CounterTotals } from '../core/counters.ts';
import type { ListedRecord, ListedState, Store, StoreInspect } from '../core/store.ts';
import { cliFailure, EXIT_FAILED } from './failure.ts';

/**
 * The store's `inspect` capability, or a one-line failure (exit 1) for a store without it.
 *
 * @example
 * const inspect = requireInspect(store, 'idem keys list');
 */
export function requireInspect(store: Store, command: string): StoreInspect {
  if (!store.inspect) {
    throw cliFailure(
      `${command}: the ${store.name} store cannot list or delete records (it has no inspect capability); use a built-in store or add inspect to yours`,
      EXIT_FAILED,
    );
  }
  return store.inspect;
}

/** What `idem keys list` asks for. */
export interface ListRequest {
  state?: ListedState | undefined;
  /** Only records created at least this long ago (records of unknown age never match). */
  olderThanMs?: number | undefined;
  /** Only records created less than this long ago (records of unknown age never match). */
  newerThanMs?: number | undefined;
  /** Only records not completed whose lease ended at least this long ago (in progress or released: stuck). */
  leaseEndedMs?: number | undefined;
  /** Only records with this scope hash ('' for unscoped ones); see `scopeHashFor`. */
  scopeHash?: string | undefined;
  cursor?: string | undefined;
  /** Stop once this many records are collected (a Redis SCAN page may add a few more). */
  limit: number;
  /** Called after each page with the records examined so far (progress). */
  onPage?: (collected: number) => void;
}

/**
 * Collects at least `limit` matching records (when there are that many) and the cursor that
 * continues after them.
 *
 * @example
 * const { records, cursor } = await listRecords(store, { state: 'in_progress', limit: 50 });
 */
export async function listRecords(
  store: Store,
  req: ListRequest,
): Promise<{ records: ListedRecord[]; cursor: string | undefined; now: number }> {
  const inspect = requireInspect(store, 'idem keys list');
  const records: ListedRecord[] = [];
  let cursor = req.cursor;
  let now = Date.now();
  do {
    const page = await inspect.list({
      state: req.state,
      cursor,
      limit: Math.min(1000, Math.max(1, req.limit - records.length)),
    });
    now = page.now;
    for (const r of page.records) if (matches(r, req, now)) records.push(r);
    cursor = page.cursor;
    req.onPage?.(records.length);
  } while (cursor !== undefined && records.length < req.limit);
  return { records, cursor, now };
}

/** True when `r` passes every filter of `req` except the state (the store filters that). */
function matches(r: ListedRecord, req: ListRequest, now: number): boolean {
  if (req.scopeHash !== undefined && r.scopeHash !== req.scopeHash) return false;
  if (req.leaseEndedMs !== undefined && (r.state === 'completed' || now - r.leaseUntil < req.leaseEndedMs))
    return false;
  if (req.olderThanMs === undefined && req.newerThanMs === undefined) return true;
  if (r.createdAt === 0) return false; // written before the store kept creation times
  const age = now - r.createdAt;
  return (
    (req.olderThanMs === undefined || age >= req.olderThanMs) &&
    (req.newerThanMs === undefined || age < req.newerThanMs)
  );
}

/** What `idem stats` reports. */
export interface StoreStats {
  records: number;
  byState: Record<ListedState, number>;
  /** Bytes of stored outcomes (as stored: encrypted or escaped outcomes count as such). */
  outcomeBytes: number;
  /**
   * How long ago the earliest lease of a record still in progress ended, ms; 0 when every
   * in-progress holder's lease is current, undefined when nothing is in progress.
   */
  longestOverdueLeaseMs: number | undefined;
  /** Records that took over an expired lease (attempt > 1), still in the store. */
  takenOver: number;
}

/**
 * Scans every live record once (pages of 1000) and counts.
 *
 * @example
 * const stats = await storeStats(store, (n) => process.stderr.write(`\r${n}`));
 */
export async function storeStats(store: Store, onProgress?: (scanned: number) => void): Promise<StoreStats> {
  const inspect = requireInspect(store, 'idem stats');
  const stats: StoreStats = {
    records: 0,
    byState: { in_progress: 0, completed: 0, released: 0 },
    outcomeBytes: 0,
    longestOverdueLeaseMs: undefined,
    takenOver: 0,
  };
  let cursor: string | undefined;
  do {
    const page = await inspect.list({ cursor, limit: 1000 });
    for (const r of page.records) {
      stats.records++;
      stats.byState[r.state]++;
      stats.outcomeBytes += r.outcomeBytes;
      if (r.attempt > 1) stats.takenOver++;
      if (r.state === 'in_progress') {
        const overdue = Math.max(0, page.now - r.leaseUntil);
        stats.longestOverdueLeaseMs = Math.max(stats.longestOverdueLeaseMs ?? 0, overdue);
      }
    }
    cursor = page.cursor;
    onProgress?.(stats.records);
  } while (cursor !== undefined);
  return stats;
}

/** A duration as a short text: `12 s`, `5 min`, `3 h`, `2 d`. */
export function span(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

const when = (at: number, now: number) => (at >= now ? `in ${span(at - now)}` : `${span(now - at)} ago`);

/**
 * The records as a table (one line each), plus how to get the next page.
 *
 * @example
 * console.log(formatList(records, cursor, Date.now()));
 */
export function formatList(records: ListedRecord[], cursor: string | undefined, now: number): string {
  const rows = [
    ['RECORD', 'STATE', 'ATTEMPT', 'CREATED', 'LEASE ENDS', 'EXPIRES', 'SCOPE', 'FINGERPRINT', 'OUTCOME'],
  ];
  for (const r of records) {
    rows.push([
      r.id,
      r.state,
      String(r.attempt),
      r.createdAt ? when(r.createdAt, now) : '?',
      r.state === 'completed' ? '-' : when(r.leaseUntil, now),
      when(r.expiresAt, now),
      r.scopeHash ? `${r.scopeHash.slice(0, 8)}…` : '-',
      r.fingerprint ? `${r.fingerprint.slice(0, 12)}…` : '-',
      r.state === 'completed' ? `${r.outcomeBytes} B` : '-',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const lines = rows.map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
  if (records.length === 0) lines.push('(no records)');
  lines.push(cursor === undefined ? '(end of the store)' : `next page: --cursor ${cursor}`);
  return lines.join('\n');
}

/**
 * The replays, conflicts, takeovers and savings the store keeps (its `counters`, written by the
 * gateway or a stats recorder), over the buckets from `since` (epoch ms; all kept, 35 days,
 * without it); undefined for a store without counters.
 *
 * @example
 * const counts = await readCounters(store, Date.now() - 3_600_000);
 */
export async function readCounters(store: Store, since?: number): Promise<CounterTotals | undefined> {
  return store.counters?.read({ since });
}

/**
 * The stats as a few readable lines, with the kept counts when the store has them.
 *
 * @example
 * console.log(formatStats(stats, await readCounters(store)));
 */
export function formatStats(s: StoreStats, counts?: CounterTotals, since?: number): string {
  const kb = (n: number) => (n < 10_240 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`);
  return [
    `records: ${s.records} (completed ${s.byState.completed}, in progress ${s.byState.in_progress}, released ${s.byState.released})`,
    `outcomes stored: ${kb(s.outcomeBytes)}`,
    `taken over (attempt > 1): ${s.takenOver}`,
    `longest overdue lease: ${
      s.longestOverdueLeaseMs === undefined
        ? '- (nothing in progress)'
        : s.longestOverdueLeaseMs === 0
          ? 'none (every holder is within its lease)'
          : `${span(s.longestOverdueLeaseMs)} (a holder that stopped; the next claim takes it over)`
    }`,
    ...formatCounts(counts, since),
  ].join('\n');
}

/** The kept counts as lines; one line saying why there are none for a store without counters. */
function formatCounts(c: CounterTotals | undefined, since: number | undefined): string[] {
  if (!c)
    return ['replays and savings: this store keeps no counters (see the gateway /metrics and /savings)'];
  const usd = c.llm_cost_saved_microusd / 1e6;
  return [
    `counted ${since === undefined ? 'over the last 35 days' : `since ${new Date(since).toISOString()}`} (written by the gateway or a stats recorder every few seconds):`,
    `  replays: ${c.replays}`,
    `  conflicts (in progress, 409): ${c.conflicts}`,
    `  mismatches (key reused with another request, 422): ${c.mismatches}`,
    `  takeovers: ${c.takeovers}`,
    `  waits: ${c.waits}`,
    `  releases: ${c.releases}`,
    `  leases lost: ${c.lease_lost}`,
    `  LLM calls saved: ${c.llm_calls_saved} (tokens: ${c.llm_tokens_saved_input} input, ${c.llm_tokens_saved_cached} cached, ${c.llm_tokens_saved_output} output; $${usd.toFixed(usd < 1 ? 4 : 2)})`,
  ];
}

/**
 * What the gateway's admin listener (dashboard, `/metrics`, `/savings`, key search) reads: one
 * process's own state, or with `idem serve --workers N` every worker's, gathered by the primary.
 *
 * @module
 */
import type { SavingsReport } from '../ai/savings.ts';

/** One key's lifecycle as the dashboard shows it. Never holds the raw key. */
export interface KeyLifecycle {
  /** The store's record id (a hash; the raw key is never kept). */
  recordId: string;
  route: string;
  method: string;
  /** What happened to the key in this process, oldest first (epoch ms). */
  events: { at: number; type: string; status?: number; detail?: string }[];
  state: 'in_progress' | 'completed' | 'released' | 'unknown';
  /** Duplicates answered from the record (stored or shared). */
  replays: number;
  firstSeenAt: number;
  lastSeenAt: number;
  /** The process that saw it (a gateway worker). */
  pid: number;
}

/** The admin listener's view of one gateway (or of all workers of one `idem serve`). */
export interface AdminSource {
  /** Prometheus text exposition of every metric. */
  metricsText(): Promise<{ contentType: string; text: string }>;
  /** The same metrics as prom-client's `registry.getMetricsAsJSON()` returns them. */
  metricsJson(): Promise<unknown[]>;
  /** The most recently seen keys, newest first, at most `limit`. */
  recentKeys(limit: number): Promise<KeyLifecycle[]>;
  /** The keys a client sent as `rawKey` (hashed on the server; the raw key is never stored). */
  findKey(rawKey: string): Promise<KeyLifecycle[]>;
  /** Tokens and money saved by suppressed duplicate LLM calls. */
  savings(): Promise<SavingsReport>;
}

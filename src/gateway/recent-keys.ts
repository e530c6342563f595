/**
 * The dashboard's recent keys: a bounded, in-memory ring of key lifecycles (default 500 keys,
 * 40 events each), fed by the engine's events and the gateway's request results. It is
 * composed around the gateway's metrics (src/gateway/metrics.ts is not changed): every request
 * runs in the gateway's request context (`currentRequest`), holding its method and key, so an engine event
 * (which carries only the hashed record id) can be tied to the request that caused it.
 *
 * The raw key is never kept: an entry holds the record id and a SHA-256 of the key keyed with a
 * secret drawn when the process starts (the secret prefixed to the key), so `find(rawKey)` can
 * match it and nothing kept can be reversed by guessing keys offline.
 *
 * @module
 */
import { hash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Histogram } from 'prom-client';
import type { IdemEvent } from '../core/events.ts';
import { INSTRUMENTS, prometheusName } from '../core/instruments.ts';
import { parseIdempotencyKey } from '../http/key.ts';
import { MAX_KEY_LENGTH_BOUND } from '../http/options.ts';
import type { KeyLifecycle } from './admin-source.ts';
import { currentRequest } from './log.ts';
import type { GatewayMetrics } from './metrics.ts';

/** Options of {@link keyTracker}. */
export interface KeyTrackerOptions {
  /** The gateway's metrics, wrapped (never changed). */
  metrics: GatewayMetrics;
  /** The request header carrying the client's key (lower case). */
  keyHeader: string;
  /** Keys remembered. Default 500. */
  capacity?: number;
  /** Events remembered per key (the newest). Default 40. */
  eventsPerKey?: number;
  /** The clock, epoch ms. */
  now?: () => number;
}

/** The ring and the hooks that feed it. */
export interface KeyTracker {
  /** `metrics` with `onEvent` and `request` also feeding the ring; pass it to the handler. */
  readonly metrics: GatewayMetrics;
  /** The engine's `onEvent`: the metrics' and the ring's. */
  onEvent(event: IdemEvent): void;
  /** Runs the request's handling in its own context (the events it causes find their request). */
  within(req: IncomingMessage, res: ServerResponse, handle: () => unknown): void;
  /** The most recently seen keys, newest first. */
  recent(limit: number): KeyLifecycle[];
  /** The remembered keys a client sent as `rawKey` (every turn of an LLM conversation), newest first. */
  find(rawKey: string): KeyLifecycle[];
}

interface Entry extends KeyLifecycle {
  keyHash: string | undefined;
}

interface RequestContext {
  method: string;
  startedAt: number;
  rawKey: string | undefined;
  recordId?: string;
  waitStartedAt?: number;
  /** The result event the response status is written to. */
  answer?: KeyLifecycle['events'][number];
}

const STATE_OF: Partial<Record<IdemEvent['type'], KeyLifecycle['state']>> = {
  acquired: 'in_progress',
  takeover: 'in_progress',
  completed: 'completed',
  released: 'released',
};

/**
 * Creates the recent-keys ring of one gateway, and registers `idem_gateway_wait_duration_seconds` in the
 * metrics' registry: how long duplicates waited for another request's outcome, whether the
 * engine waited on the store (`idem_waits_total` counts those) or the duplicate joined the live
 * request in this process (timed from its arrival).
 *
 * @example
 * const tracker = keyTracker({ metrics, keyHeader: 'idempotency-key' });
 * const idem = createIdem({ store, onEvent: tracker.onEvent });
 * const proxy = createProxyHandler({ ...deps, metrics: tracker.metrics });
 * http.createServer((req, res) => tracker.within(req, res, () => proxy(req, res)));
 * tracker.recent(20); // [{ recordId, route, state: 'completed', events: [...] }, …]
 */
export function keyTracker(options: KeyTrackerOptions): KeyTracker {
  const { metrics, keyHeader } = options;
  const capacity = options.capacity ?? 500;
  const eventsPerKey = options.eventsPerKey ?? 40;
  const now = options.now ?? Date.now;
  // a one-shot SHA-256 over a fixed-length secret and the key: `createHmac` costs ~15x more per call
  const secret = randomBytes(32).toString('hex');
  const hashOf = (rawKey: string) => hash('sha256', secret + rawKey, 'base64url');
  const contextOf = () => currentRequest.getStore()?.tracking as RequestContext | undefined;
  const entries = new Map<string, Entry>(); // insertion order = last seen, oldest first
  const waited = new Histogram({
    name: prometheusName(INSTRUMENTS.gatewayWait),
    help: INSTRUMENTS.gatewayWait.description,
    buckets: [...(INSTRUMENTS.gatewayWait.buckets ?? [])],
    registers: [metrics.registry],
  });

  /** The entry of `recordId`, moved to the newest end; created when a request context exists. */
  function touch(recordId: string, ctx: RequestContext | undefined): Entry | undefined {
    const at = now();
    let entry = entries.get(recordId);
    if (entry) entries.delete(recordId);
    else if (ctx) {
      entry = {
        recordId,
        route: '',
        method: ctx.method,
        events: [],
        state: 'unknown',
        replays: 0,
        firstSeenAt: at,
        lastSeenAt: at,
        pid: process.pid,
        keyHash: undefined,
      };
    } else return undefined;
    if (ctx?.rawKey !== undefined && entry.keyHash === undefined) entry.keyHash = hashOf(ctx.rawKey);
    entry.lastSeenAt = at;
    entries.set(recordId, entry);
    if (entries.size > capacity) entries.delete(entries.keys().next().value as string);
    return entry;
  }

  function push(entry: Entry, event: KeyLifecycle['events'][number]): void {
    entry.events.push(event);
    if (entry.events.length > eventsPerKey) entry.events.splice(0, entry.events.length - eventsPerKey);
  }

  function onEvent(event: IdemEvent): void {
    metrics.onEvent(event);
    const ctx = contextOf();
    if (ctx && ctx.recordId === undefined) ctx.recordId = event.recordId;
    const entry = touch(event.recordId, ctx);
    if (!entry) return;
    const state = STATE_OF[event.type];
    if (state) entry.state = state;
    if (event.type === 'replayed') {
      entry.replays++;
      if (entry.state === 'unknown') entry.state = 'completed';
    }
    // a duplicate waited: for the store's outcome (a wait event), or on the live request in this
    // process (a shared replay, which the engine reports only at the end: timed from arrival)
    if (ctx && event.type === 'wait') ctx.waitStartedAt ??= now();
    if (ctx && event.type === 'replayed' && event.shared) ctx.waitStartedAt ??= ctx.startedAt;
    push(entry, { at: now(), type: event.type, ...detailOf(event) });
  }

  const tracked: GatewayMetrics = {
    ...metrics,
    onEvent,
    request(route, result) {
      metrics.request(route, result);
      const ctx = contextOf();
      if (!ctx?.recordId) return;
      const entry = touch(ctx.recordId, ctx);
      if (!entry) return;
      entry.route = route;
      const event: KeyLifecycle['events'][number] = { at: now(), type: result };
      if (ctx.waitStartedAt !== undefined) {
        const ms = now() - ctx.waitStartedAt;
        waited.observe(ms / 1000);
        event.detail = `waited ${ms} ms`;
        ctx.waitStartedAt = undefined;
      }
      ctx.answer = event;
      push(entry, event);
    },
  };

  return {
    metrics: tracked,
    onEvent,
    within(req, res, handle) {
      const header = req.headers[keyHeader];
      const parsed =
        typeof header === 'string' ? parseIdempotencyKey(header, MAX_KEY_LENGTH_BOUND) : undefined;
      const ctx: RequestContext = {
        method: req.method ?? 'GET',
        startedAt: now(),
        rawKey: parsed?.ok ? parsed.key : undefined,
      };
      // the raw key lives only as long as this context (the request); the hash is what stays
      res.once('finish', () => {
        if (ctx.answer) ctx.answer.status = res.statusCode;
      });
      // the handler fills in this note (traceparent, route, result) instead of making its own
      currentRequest.run({ traceparent: '', route: 'unmatched', result: 'error', tracking: ctx }, handle);
    },
    recent(limit) {
      const out: KeyLifecycle[] = [];
      for (const entry of [...entries.values()].reverse()) {
        if (out.length >= limit) break;
        out.push(publicView(entry));
      }
      return out;
    },
    find(rawKey) {
      const wanted = hashOf(rawKey);
      return [...entries.values()]
        .reverse()
        .filter((e) => e.keyHash === wanted)
        .map(publicView);
    },
  };
}

// --- Internal helpers ---

function detailOf(event: IdemEvent): { detail?: string } {
  switch (event.type) {
    case 'takeover':
      return { detail: `attempt ${event.attempt}` };
    case 'completed':
      return { detail: `${event.durationMs} ms${event.error ? ', error stored' : ''}` };
    case 'replayed':
      return { detail: event.shared ? 'shared (joined the live request)' : 'from the stored outcome' };
    case 'too_large':
      return { detail: `${event.bytes} bytes` };
    case 'store_error':
      return { detail: event.error instanceof Error ? event.error.message : String(event.error) };
    default:
      return {};
  }
}

/** A copy without the key hash (it never leaves the process). */
function publicView(entry: Entry): KeyLifecycle {
  const { keyHash: _, ...view } = entry;
  return { ...view, events: entry.events.map((e) => ({ ...e })) };
}

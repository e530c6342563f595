/**
 * Prometheus metrics of one gateway, in its own registry (several gateways in one process
 * never collide). Engine transitions arrive through `onEvent`; store latency comes from a thin
 * timing wrapper around the store; the rest is counted by the request handler.
 *
 * | metric | type | labels |
 * |---|---|---|
 * | `idem_claims_total` | counter | |
 * | `idem_takeovers_total` | counter | |
 * | `idem_replays_total` | counter | `shared` (`true`: joined an in-process flight) |
 * | `idem_fingerprint_mismatches_total` | counter | |
 * | `idem_in_progress_conflicts_total` | counter | |
 * | `idem_waits_total` | counter | |
 * | `idem_releases_total` | counter | |
 * | `idem_lease_lost_total` | counter | |
 * | `idem_store_errors_total` | counter | |
 * | `idem_store_latency_seconds` | histogram | `op` |
 * | `idem_in_progress_seconds` | histogram | time from claim to stored outcome |
 * | `idem_gateway_requests_total` | counter | `route`, `result` |
 * | `idem_gateway_requests_without_key_total` | counter | `route` |
 * | `idem_gateway_upstream_errors_total` | counter | `phase` (`before_send`, `after_send`) |
 * | `idem_llm_duplicate_calls_suppressed_total` | counter | `provider`, `model` (LLM routes: answered without calling the provider) |
 * | `idem_llm_tokens_saved_total` | counter | `kind` (`input`, `cached`, `output`) |
 * | `idem_llm_cost_saved_usd_total` | counter | `model` (models in the price table) |
 *
 * @module
 */
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import type { Saved } from '../ai/savings.ts';
import type { IdemEvent } from '../core/events.ts';
import type { Store } from '../core/store.ts';

/** How a gateway request ended, for `idem_gateway_requests_total{result}`. */
export type RequestResult =
  | 'executed'
  | 'replayed'
  | 'attached'
  | 'passthrough'
  | 'rejected'
  | 'bypassed'
  | 'cancelled'
  | 'error';

/** The gateway's metrics. */
export interface GatewayMetrics {
  registry: Registry;
  onEvent(event: IdemEvent): void;
  request(route: string, result: RequestResult): void;
  withoutKey(route: string): void;
  upstreamError(phase: 'before_send' | 'after_send'): void;
  /** One duplicate LLM call suppressed, and what it saved. */
  llmSaved(saved: Saved): void;
  /** Wraps a store so every operation's latency is observed. */
  instrument(store: Store): Store;
}

/**
 * Creates the metrics of one gateway.
 *
 * @example
 * const metrics = gatewayMetrics();
 * const idem = createIdem({ store: metrics.instrument(store), onEvent: metrics.onEvent });
 * res.end(await metrics.registry.metrics());
 */
export function gatewayMetrics(): GatewayMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const counter = (name: string, help: string, labelNames: string[] = []) =>
    new Counter({ name, help, labelNames, registers: [registry] });
  const claims = counter('idem_claims_total', 'Keys claimed (the request was forwarded upstream)');
  const takeovers = counter('idem_takeovers_total', 'Expired leases taken over');
  const replays = counter('idem_replays_total', 'Duplicates answered from a stored or shared outcome', [
    'shared',
  ]);
  const mismatches = counter('idem_fingerprint_mismatches_total', 'Keys reused with another request (422)');
  const conflicts = counter(
    'idem_in_progress_conflicts_total',
    'Duplicates rejected while in progress (409)',
  );
  const waits = counter('idem_waits_total', 'Duplicates that waited for an in-progress outcome');
  const releases = counter('idem_releases_total', 'Keys released (a retry runs again)');
  const leaseLost = counter('idem_lease_lost_total', 'Outcomes not stored because the lease was lost');
  const storeErrors = counter('idem_store_errors_total', 'Store operations that failed');
  const requests = counter('idem_gateway_requests_total', 'Gateway requests by route and result', [
    'route',
    'result',
  ]);
  const withoutKey = counter(
    'idem_gateway_requests_without_key_total',
    'Requests on an idempotent route that carried no key',
    ['route'],
  );
  const upstreamErrors = counter('idem_gateway_upstream_errors_total', 'Upstream failures by phase', [
    'phase',
  ]);
  const suppressed = counter(
    'idem_llm_duplicate_calls_suppressed_total',
    'Duplicate LLM calls answered from a stored or shared outcome instead of the provider',
    ['provider', 'model'],
  );
  const tokensSaved = counter('idem_llm_tokens_saved_total', 'Tokens not billed again, by kind', ['kind']);
  const costSaved = counter(
    'idem_llm_cost_saved_usd_total',
    'USD not billed again, at the price table (models it lists)',
    ['model'],
  );
  const storeLatency = new Histogram({
    name: 'idem_store_latency_seconds',
    help: 'Store operation latency',
    labelNames: ['op'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const inProgress = new Histogram({
    name: 'idem_in_progress_seconds',
    help: 'Time from claim to stored outcome',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600],
    registers: [registry],
  });
  const byRoute = new Map<string, { inc(): void }>();
  const sharedTrue = replays.labels('true');
  const sharedFalse = replays.labels('false');

  const timed = <A extends unknown[], R>(op: string, fn: (...a: A) => Promise<R>) => {
    const h = storeLatency.labels(op);
    return async (...args: A): Promise<R> => {
      const end = h.startTimer();
      try {
        return await fn(...args);
      } finally {
        end();
      }
    };
  };

  return {
    registry,
    onEvent(event) {
      switch (event.type) {
        case 'acquired':
          claims.inc();
          break;
        case 'takeover':
          claims.inc();
          takeovers.inc();
          break;
        case 'replayed':
          (event.shared ? sharedTrue : sharedFalse).inc();
          break;
        case 'mismatch':
          mismatches.inc();
          break;
        case 'in_progress':
          conflicts.inc();
          break;
        case 'wait':
          waits.inc();
          break;
        case 'released':
          releases.inc();
          break;
        case 'lease_lost':
          leaseLost.inc();
          break;
        case 'store_error':
          storeErrors.inc();
          break;
        case 'completed':
          inProgress.observe(event.durationMs / 1000);
          break;
      }
    },
    request(route, result) {
      const id = `${route}\0${result}`;
      let child = byRoute.get(id);
      if (!child) {
        child = requests.labels(route, result);
        byRoute.set(id, child);
      }
      child.inc();
    },
    withoutKey: (route) => withoutKey.labels(route).inc(),
    upstreamError: (phase) => upstreamErrors.labels(phase).inc(),
    llmSaved(saved) {
      suppressed.labels(saved.provider, saved.model).inc();
      for (const kind of ['input', 'cached', 'output'] as const) {
        if (saved.tokens[kind] > 0) tokensSaved.labels(kind).inc(saved.tokens[kind]);
      }
      if (saved.costUsd !== undefined) costSaved.labels(saved.model).inc(saved.costUsd);
    },
    instrument(store) {
      const wrapped: Store = {
        name: store.name,
        claim: timed('claim', store.claim.bind(store)),
        complete: timed('complete', store.complete.bind(store)),
        release: timed('release', store.release.bind(store)),
        renew: timed('renew', store.renew.bind(store)),
        get: timed('get', store.get.bind(store)),
        purgeExpired: timed('purge', store.purgeExpired.bind(store)),
      };
      if (store.subscribe) wrapped.subscribe = store.subscribe.bind(store);
      if (store.close) wrapped.close = store.close.bind(store);
      return wrapped;
    },
  };
}

/**
 * Prometheus metrics of one gateway, in its own registry (several gateways in one process
 * never collide). Every metric comes from the instrument catalogue (src/core/instruments.ts)
 * that `idem/otel` also uses: the names and labels are what an OpenTelemetry Prometheus
 * exporter produces for the library's instruments (`idem_claims_total`,
 * `idem_in_progress_duration_seconds`, `idem_store_operation_duration_seconds{idem_store_operation}`…),
 * plus the gateway's own (`idem_gateway_requests_total{route,result}`,
 * `idem_gateway_requests_without_key_total{route}`, `idem_gateway_upstream_errors_total{phase}`)
 * and the LLM savings counters. Engine transitions arrive through `onEvent`; store latency comes
 * from a thin timing wrapper around the store; the rest is counted by the request handler. The
 * full list: docs/operations.md.
 *
 * @module
 */
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import type { Saved } from '../ai/savings.ts';
import type { IdemEvent } from '../core/events.ts';
import { INSTRUMENTS, type InstrumentSpec, prometheusLabel, prometheusName } from '../core/instruments.ts';
import type { Store } from '../core/store.ts';
import { errorType } from '../otel/errors.ts';

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
  const counter = (spec: InstrumentSpec) =>
    new Counter({
      name: prometheusName(spec),
      help: spec.description,
      labelNames: spec.attributes.map(prometheusLabel),
      registers: [registry],
    });
  const histogram = (spec: InstrumentSpec) =>
    new Histogram({
      name: prometheusName(spec),
      help: spec.description,
      labelNames: spec.attributes.map(prometheusLabel),
      buckets: [...(spec.buckets ?? [])],
      registers: [registry],
    });
  const I = INSTRUMENTS;
  const claims = counter(I.claims);
  const takeovers = counter(I.takeovers);
  const replays = counter(I.replays);
  const mismatches = counter(I.mismatches);
  const conflicts = counter(I.conflicts);
  const waits = counter(I.waits);
  const releases = counter(I.releases);
  const leaseLost = counter(I.leaseLosses);
  const storeErrors = counter(I.storeErrors);
  const tooLarge = counter(I.tooLarge);
  const requests = counter(I.gatewayRequests);
  const withoutKey = counter(I.gatewayWithoutKey);
  const upstreamErrors = counter(I.gatewayUpstreamErrors);
  const suppressed = counter(I.llmSuppressed);
  const tokensSaved = counter(I.llmTokensSaved);
  const costSaved = counter(I.llmCostSaved);
  const storeLatency = histogram(I.storeOperation);
  const inProgress = histogram(I.inProgress);
  const claimed = claims.labels({ idem_takeover: 'false' });
  const takenOver = claims.labels({ idem_takeover: 'true' });
  const outcomeOk = inProgress.labels({ idem_outcome_error: 'false' });
  const outcomeError = inProgress.labels({ idem_outcome_error: 'true' });
  const byRoute = new Map<string, { inc(): void }>();
  const replayed = (shared: boolean, cached: boolean) =>
    replays.labels({ idem_replay_shared: String(shared), idem_replay_cached: String(cached) });

  const timed = <A extends unknown[], R>(storeName: string, op: string, fn: (...a: A) => Promise<R>) => {
    const ok = storeLatency.labels({ idem_store_operation: op, idem_store_name: storeName });
    return async (...args: A): Promise<R> => {
      const start = performance.now();
      try {
        const answer = await fn(...args);
        ok.observe((performance.now() - start) / 1000);
        return answer;
      } catch (error) {
        storeLatency.observe(
          { idem_store_operation: op, idem_store_name: storeName, error_type: errorType(error) },
          (performance.now() - start) / 1000,
        );
        throw error;
      }
    };
  };

  return {
    registry,
    onEvent(event) {
      switch (event.type) {
        case 'acquired':
          claimed.inc();
          break;
        case 'takeover':
          takenOver.inc();
          takeovers.inc();
          break;
        case 'replayed':
          replayed(event.shared, event.cached ?? false).inc();
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
          storeErrors.labels({ error_type: errorType(event.error) }).inc();
          break;
        case 'too_large':
          tooLarge.inc();
          break;
        case 'completed':
          (event.error ? outcomeError : outcomeOk).observe(event.durationMs / 1000);
          break;
      }
    },
    request(route, result) {
      const id = `${route}\0${result}`;
      let child = byRoute.get(id);
      if (!child) {
        child = requests.labels({ route, result });
        byRoute.set(id, child);
      }
      child.inc();
    },
    withoutKey: (route) => withoutKey.labels({ route }).inc(),
    upstreamError: (phase) => upstreamErrors.labels({ phase }).inc(),
    llmSaved(saved) {
      const at = { provider: saved.provider, model: saved.model };
      suppressed.labels(at).inc();
      for (const kind of ['input', 'cached', 'output'] as const) {
        if (saved.tokens[kind] > 0) tokensSaved.labels({ ...at, kind }).inc(saved.tokens[kind]);
      }
      if (saved.costUsd !== undefined) costSaved.labels(at).inc(saved.costUsd);
    },
    instrument(store) {
      const wrapped: Store = {
        name: store.name,
        claim: timed(store.name, 'claim', store.claim.bind(store)),
        complete: timed(store.name, 'complete', store.complete.bind(store)),
        release: timed(store.name, 'release', store.release.bind(store)),
        renew: timed(store.name, 'renew', store.renew.bind(store)),
        get: timed(store.name, 'get', store.get.bind(store)),
        purgeExpired: timed(store.name, 'purge', store.purgeExpired.bind(store)),
      };
      if (store.subscribe) wrapped.subscribe = store.subscribe.bind(store);
      if (store.close) wrapped.close = store.close.bind(store);
      return wrapped;
    },
  };
}

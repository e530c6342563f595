/**
 * OpenTelemetry for the library: metrics from the engine's `onEvent` events (and, optionally,
 * store latency from a wrapped store), and one span per `run` / `execute` through
 * {@link traced}. Everything goes through `@opentelemetry/api`'s global providers, so it is a
 * no-op until an SDK is registered, and a no-op when `@opentelemetry/api` is not installed.
 * Never the raw key: the hashed record id is an attribute only with `recordId: true`.
 * Names, units and attributes: docs/otel.md.
 *
 * @module
 */
import type { IdemEvent } from '../core/events.ts';
import type { Store } from '../core/store.ts';
import { otelApi } from './api.ts';
import { errorType } from './errors.ts';
import { checkOptions } from './options.ts';

export { errorType } from './errors.ts';
export { type SpanOutcome, type TracedOptions, traced } from './traced.ts';

/** Options of {@link otelInstrumentation}. */
export interface OtelInstrumentationOptions {
  /** The meter (instrumentation scope) name. Default `'idem'`. */
  meterName?: string;
  /** Adds `idem.record_id` (the hashed key, never the raw one) to span events. Default false. */
  recordId?: boolean;
  /** Adds each event to the active span (`idem.takeover`, `idem.wait`, …). Default true. */
  spanEvents?: boolean;
}

/** What {@link otelInstrumentation} answers. */
export interface OtelInstrumentation {
  /** Pass as `createIdem({ onEvent })` (or call from your own `onEvent`). */
  onEvent(event: IdemEvent): void;
  /** A store that records `idem.store.operation.duration` by operation. */
  instrumentStore(store: Store): Store;
}

type Attrs = Record<string, string | number | boolean>;
type Counter = { add(value: number, attributes?: Attrs): void };
type Histogram = { record(value: number, attributes?: Attrs): void };

const COUNTERS = {
  claims: ['idem.claims', '{claim}', 'Keys claimed: the action runs (takeovers included)'],
  takeovers: ['idem.takeovers', '{claim}', 'Expired leases taken over'],
  replays: ['idem.replays', '{call}', 'Calls answered from a stored or shared outcome'],
  mismatches: ['idem.fingerprint_mismatches', '{call}', 'Keys reused with another input'],
  conflicts: ['idem.in_progress_conflicts', '{call}', 'Duplicates refused while the key is in progress'],
  waits: ['idem.waits', '{call}', 'Duplicates that waited for an in-progress outcome'],
  releases: ['idem.releases', '{key}', 'Keys released (a retry runs again)'],
  leaseLosses: ['idem.lease_lost', '{outcome}', 'Outcomes not stored because the lease was lost'],
  storeErrors: ['idem.store_errors', '{error}', 'Store operations that failed'],
  tooLarge: ['idem.outcomes_too_large', '{outcome}', 'Outcomes refused for their size'],
} as const;

interface Instruments {
  counters: Record<keyof typeof COUNTERS, Counter>;
  inProgress: Histogram;
  storeLatency: Histogram;
}

/** Store methods timed by `instrumentStore`, and their `idem.store.operation` value. */
const STORE_OPS: Record<string, string> = {
  claim: 'claim',
  complete: 'complete',
  release: 'release',
  renew: 'renew',
  get: 'get',
  purgeExpired: 'purge',
};

/**
 * OpenTelemetry metrics for an idem instance, through the global MeterProvider (a no-op without
 * an SDK; an SDK registered later is picked up).
 *
 * @example
 * import { createIdem, memoryStore } from 'idem';
 * import { otelInstrumentation } from 'idem/otel';
 * const otel = otelInstrumentation();
 * const idem = createIdem({ store: otel.instrumentStore(memoryStore()), onEvent: otel.onEvent });
 */
export function otelInstrumentation(options: OtelInstrumentationOptions = {}): OtelInstrumentation {
  checkOptions('otelInstrumentation', options, {
    meterName: 'string',
    recordId: 'boolean',
    spanEvents: 'boolean',
  });
  const meterName = options.meterName ?? 'idem';
  const spanEvents = options.spanEvents ?? true;
  let provider: unknown;
  let instruments: Instruments | undefined;
  const get = (): Instruments | undefined => {
    if (!otelApi) return undefined;
    const current = otelApi.metrics.getMeterProvider();
    if (current === provider && instruments) return instruments;
    provider = current;
    const meter = current.getMeter(meterName);
    const counters = {} as Instruments['counters'];
    for (const [field, [name, unit, description]] of Object.entries(COUNTERS))
      counters[field as keyof typeof COUNTERS] = meter.createCounter(name, { unit, description });
    instruments = {
      counters,
      inProgress: meter.createHistogram('idem.in_progress.duration', {
        unit: 's',
        description: 'Time from claim to stored outcome',
      }),
      storeLatency: meter.createHistogram('idem.store.operation.duration', {
        unit: 's',
        description: 'Store operation latency',
      }),
    };
    return instruments;
  };

  const addSpanEvent = (event: IdemEvent) => {
    const span = otelApi?.trace.getActiveSpan();
    if (!span?.isRecording()) return;
    const attrs: Attrs = {};
    if (options.recordId) attrs['idem.record_id'] = event.recordId;
    if ('attempt' in event) attrs['idem.attempt'] = event.attempt;
    span.addEvent(`idem.${event.type}`, attrs);
  };

  return {
    onEvent(event) {
      const i = get();
      if (!i) return;
      const c = i.counters;
      switch (event.type) {
        case 'acquired':
          c.claims.add(1, { 'idem.takeover': false });
          break;
        case 'takeover':
          c.claims.add(1, { 'idem.takeover': true });
          c.takeovers.add(1);
          break;
        case 'replayed':
          c.replays.add(1, {
            'idem.replay.shared': event.shared,
            'idem.replay.cached': event.cached ?? false,
          });
          break;
        case 'mismatch':
          c.mismatches.add(1);
          break;
        case 'in_progress':
          c.conflicts.add(1);
          break;
        case 'wait':
          c.waits.add(1);
          break;
        case 'released':
          c.releases.add(1);
          break;
        case 'lease_lost':
          c.leaseLosses.add(1);
          break;
        case 'store_error':
          c.storeErrors.add(1, { 'error.type': errorType(event.error) });
          break;
        case 'too_large':
          c.tooLarge.add(1);
          break;
        case 'completed':
          i.inProgress.record(event.durationMs / 1000, { 'idem.outcome.error': event.error ?? false });
          break;
      }
      if (spanEvents) addSpanEvent(event);
    },
    instrumentStore(store) {
      const timed =
        <A extends unknown[], R>(op: string, fn: (...a: A) => Promise<R>) =>
        async (...args: A): Promise<R> => {
          const i = get();
          if (!i) return fn(...args);
          const start = performance.now();
          const attrs: Attrs = { 'idem.store.operation': op, 'idem.store.name': store.name };
          try {
            return await fn(...args);
          } catch (error) {
            attrs['error.type'] = errorType(error);
            throw error;
          } finally {
            try {
              i.storeLatency.record((performance.now() - start) / 1000, attrs);
            } catch {
              // a broken metrics SDK never changes what the store answered
            }
          }
        };
      // a proxy, not a copy: class-based stores keep their private state and extra methods
      const cache = new Map<PropertyKey, unknown>();
      return new Proxy(store, {
        get(target, prop) {
          const value: unknown = Reflect.get(target, prop, target);
          if (typeof value !== 'function') return value;
          let fn = cache.get(prop);
          if (!fn) {
            const bound = (value as (...a: unknown[]) => unknown).bind(target);
            const op =
              typeof prop === 'string' && Object.hasOwn(STORE_OPS, prop) ? STORE_OPS[prop] : undefined;
            fn = op ? timed(op, bound as (...a: unknown[]) => Promise<unknown>) : bound;
            cache.set(prop, fn);
          }
          return fn;
        },
      });
    },
  };
}

/**
 * OpenTelemetry for the library: metrics from the engine's `onEvent` events (and, optionally,
 * store latency from a wrapped store), and one span per `run` / `execute` through
 * {@link traced}. Everything goes through `@opentelemetry/api`'s global providers, so it is a
 * no-op until an SDK is registered, and a no-op when `@opentelemetry/api` is not installed.
 * Never the raw key: the hashed record id is an attribute only with `recordId: true`.
 * Names, units and attributes: src/core/instruments.ts (the catalogue the gateway's `/metrics`
 * shares), listed in docs/otel.md and docs/operations.md.
 *
 * @module
 */
import type { IdemEvent } from '../core/events.ts';
import { INSTRUMENTS, type InstrumentField, type InstrumentSpec } from '../core/instruments.ts';
import type { Store } from '../core/store.ts';
import { otelApi } from './api.ts';
import { errorType } from './errors.ts';
import { checkOptions } from './options.ts';

export { errorType } from './errors.ts';
export { activeTraceparent, EVENT_LEVELS, type EventLogger, logEvents } from './log.ts';
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

const COUNTER_FIELDS = [
  'claims',
  'takeovers',
  'replays',
  'mismatches',
  'conflicts',
  'waits',
  'releases',
  'leaseLosses',
  'storeErrors',
  'tooLarge',
] as const satisfies readonly InstrumentField[];

interface Instruments {
  counters: Record<(typeof COUNTER_FIELDS)[number], Counter>;
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
    for (const field of COUNTER_FIELDS) {
      const { name, unit, description } = INSTRUMENTS[field];
      counters[field] = meter.createCounter(name, { unit, description });
    }
    const histogram = (spec: InstrumentSpec) =>
      meter.createHistogram(spec.name, {
        unit: spec.unit,
        description: spec.description,
        ...(spec.buckets && { advice: { explicitBucketBoundaries: [...spec.buckets] } }),
      });
    instruments = {
      counters,
      inProgress: histogram(INSTRUMENTS.inProgress),
      storeLatency: histogram(INSTRUMENTS.storeOperation),
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

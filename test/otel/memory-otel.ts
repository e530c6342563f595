/**
 * A minimal in-memory OpenTelemetry "SDK" for tests, written against `@opentelemetry/api`'s
 * interfaces only (no SDK package is installed): a MeterProvider that keeps every counter add
 * and histogram record, a TracerProvider that keeps every ended span with its parent, and an
 * AsyncLocalStorage context manager so the active span follows `await`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import {
  type Attributes,
  type Context,
  type ContextManager,
  context,
  createNoopMeter,
  type Meter,
  type MeterProvider,
  metrics,
  ROOT_CONTEXT,
  type Span,
  type SpanOptions,
  type SpanStatus,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';

export interface Point {
  meter: string;
  instrument: string;
  kind: 'counter' | 'histogram';
  unit: string | undefined;
  value: number;
  attributes: Attributes;
}
export interface FinishedSpan {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  attributes: Attributes;
  events: { name: string; attributes: Attributes }[];
  status: SpanStatus | undefined;
  exceptions: unknown[];
}

export const points: Point[] = [];
export const spans: FinishedSpan[] = [];

function meterProvider(): MeterProvider {
  return {
    getMeter(name): Meter {
      const noop = createNoopMeter();
      const meter: Meter = Object.create(noop);
      meter.createCounter = (instrument, options) => ({
        add: (value, attributes) =>
          void points.push({
            meter: name,
            instrument,
            kind: 'counter',
            unit: options?.unit,
            value,
            attributes: attributes ?? {},
          }),
      });
      meter.createHistogram = (instrument, options) => ({
        record: (value, attributes) =>
          void points.push({
            meter: name,
            instrument,
            kind: 'histogram',
            unit: options?.unit,
            value,
            attributes: attributes ?? {},
          }),
      });
      return meter;
    },
  };
}

function tracerProvider(): TracerProvider {
  const tracer: Tracer = {
    startSpan(name: string, options: SpanOptions = {}, ctx: Context = context.active()): Span {
      const parent = options.root ? undefined : trace.getSpanContext(ctx);
      const traceId = parent?.traceId ?? randomBytes(16).toString('hex');
      const spanId = randomBytes(8).toString('hex');
      const done: FinishedSpan = {
        name,
        traceId,
        spanId,
        parentSpanId: parent?.spanId,
        attributes: { ...options.attributes },
        events: [],
        status: undefined,
        exceptions: [],
      };
      let ended = false;
      const span: Span = {
        spanContext: () => ({ traceId, spanId, traceFlags: 1 }),
        setAttribute: (k, v) => {
          if (v !== undefined) done.attributes[k] = v;
          return span;
        },
        setAttributes: (a) => {
          Object.assign(done.attributes, a);
          return span;
        },
        addEvent: (eventName, attributes) => {
          done.events.push({ name: eventName, attributes: (attributes ?? {}) as Attributes });
          return span;
        },
        addLink: () => span,
        addLinks: () => span,
        setStatus: (status) => {
          done.status = status;
          return span;
        },
        updateName: (n) => {
          done.name = n;
          return span;
        },
        end: () => {
          if (ended) return;
          ended = true;
          spans.push(done);
        },
        isRecording: () => !ended,
        recordException: (e) => void done.exceptions.push(e),
      };
      return span;
    },
    startActiveSpan(name: string, ...rest: unknown[]) {
      const fn = rest.pop() as (span: Span) => unknown;
      const [options, ctx = context.active()] = rest as [SpanOptions | undefined, Context | undefined];
      const span = tracer.startSpan(name, options, ctx);
      return context.with(trace.setSpan(ctx, span), fn, undefined, span);
    },
  } as Tracer;
  return { getTracer: () => tracer };
}

function asyncContextManager(): ContextManager {
  const storage = new AsyncLocalStorage<Context>();
  const manager: ContextManager = {
    active: () => storage.getStore() ?? ROOT_CONTEXT,
    with: (ctx, fn, thisArg, ...args) => storage.run(ctx, () => fn.apply(thisArg, args)),
    bind: (ctx, target) =>
      (typeof target === 'function'
        ? (...args: unknown[]) =>
            manager.with(ctx, target as (...a: unknown[]) => unknown, undefined, ...args)
        : target) as typeof target,
    enable: () => manager,
    disable: () => {
      storage.disable();
      return manager;
    },
  };
  return manager;
}

/** Registers the three as the global providers; answers false if one was already set. */
export function registerMemoryOtel(): boolean {
  return [
    context.setGlobalContextManager(asyncContextManager()),
    trace.setGlobalTracerProvider(tracerProvider()),
    metrics.setGlobalMeterProvider(meterProvider()),
  ].every(Boolean);
}

/** The sum of a counter's adds whose attributes include `match`. */
export function sum(instrument: string, match: Attributes = {}): number {
  return points
    .filter(
      (p) => p.instrument === instrument && Object.entries(match).every(([k, v]) => p.attributes[k] === v),
    )
    .reduce((a, p) => a + p.value, 0);
}

/**
 * Without any OpenTelemetry provider registered (the API's no-op globals): idem/otel changes
 * nothing — same answers, no active span in the action, no throw — and an SDK registered later
 * is picked up by the instrumentation created before it.
 */
import { metrics, trace } from '@opentelemetry/api';
import { createIdem, FingerprintMismatchError, memoryStore } from 'idem';
import { otelInstrumentation, traced } from 'idem/otel';
import { expect, it } from 'vitest';
import { points, registerMemoryOtel, spans, sum } from './memory-otel.ts';

it('no provider: a no-op that throws nothing; a provider registered later is used', async () => {
  const otel = otelInstrumentation();
  const idem = traced(createIdem({ store: otel.instrumentStore(memoryStore()), onEvent: otel.onEvent }));
  const seen: unknown[] = [];
  const act = () => {
    seen.push(trace.getActiveSpan());
    return 'v';
  };
  expect(await idem.execute('a', act)).toMatchObject({ value: 'v', replayed: false, attempt: 1 });
  expect(await idem.execute('a', act)).toMatchObject({ value: 'v', replayed: true });
  await expect(idem.run('a', act, { input: 1 })).rejects.toBeInstanceOf(FingerprintMismatchError);
  expect(seen).toEqual([undefined]); // the no-op tracer makes no active span
  expect(metrics.getMeterProvider().getMeter('idem').createCounter('x').add).toBeTypeOf('function');
  expect(points).toEqual([]);

  expect(registerMemoryOtel()).toBe(true);
  await idem.run('b', act);
  expect(sum('idem.claims')).toBe(1);
  expect(spans.map((s) => s.name)).toEqual(['idem.run']);
  expect(seen.at(-1)).toBeDefined();
});

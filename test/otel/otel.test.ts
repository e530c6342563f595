/**
 * idem/otel against the real `@opentelemetry/api`, with the in-memory providers of
 * memory-otel.ts registered globally: the instruments, values and attributes recorded after real
 * engine calls (fresh, replay, mismatch, conflict, wait, release, takeover after a short lease,
 * store errors, too large), and the spans of traced() joining the caller's trace.
 */
import { context, trace } from '@opentelemetry/api';
import {
  createIdem,
  FingerprintMismatchError,
  InProgressError,
  InvalidOptionError,
  memoryStore,
  type Store,
} from 'idem';
import { otelInstrumentation, traced } from 'idem/otel';
import { beforeAll, beforeEach, expect, it } from 'vitest';
import { points, registerMemoryOtel, spans, sum } from './memory-otel.ts';

beforeAll(() => {
  expect(registerMemoryOtel()).toBe(true);
});
beforeEach(() => {
  points.length = 0;
  spans.length = 0;
});

const setup = (store: Store = memoryStore(), extra: Record<string, unknown> = {}) => {
  const otel = otelInstrumentation();
  const idem = traced(createIdem({ store: otel.instrumentStore(store), onEvent: otel.onEvent, ...extra }));
  return { idem, store };
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('fresh, replay, mismatch: counters, the in-progress histogram and store latency by op', async () => {
  const { idem } = setup();
  let runs = 0;
  const act = () => ++runs;
  expect((await idem.execute('order-1', act, { input: { a: 1 } })).value).toBe(1);
  expect(await idem.execute('order-1', act, { input: { a: 1 } })).toMatchObject({ value: 1, replayed: true });
  await expect(idem.run('order-1', act, { input: { a: 2 } })).rejects.toBeInstanceOf(
    FingerprintMismatchError,
  );
  expect(runs).toBe(1);

  expect(sum('idem.claims', { 'idem.takeover': false })).toBe(1);
  expect(sum('idem.replays', { 'idem.replay.shared': false, 'idem.replay.cached': false })).toBe(1);
  expect(sum('idem.fingerprint_mismatches')).toBe(1);
  expect(sum('idem.takeovers')).toBe(0);
  const inProgress = points.filter((p) => p.instrument === 'idem.in_progress.duration');
  expect(inProgress).toHaveLength(1);
  expect(inProgress[0]).toMatchObject({
    kind: 'histogram',
    unit: 's',
    attributes: { 'idem.outcome.error': false },
  });
  expect(inProgress[0]!.value).toBeGreaterThanOrEqual(0);
  expect(inProgress[0]!.value).toBeLessThan(10); // seconds, not milliseconds

  const ops = points.filter((p) => p.instrument === 'idem.store.operation.duration');
  expect(new Set(ops.map((p) => p.attributes['idem.store.operation']))).toEqual(
    new Set(['claim', 'complete']),
  );
  expect(ops.every((p) => p.unit === 's' && p.attributes['idem.store.name'] === 'memory')).toBe(true);
  expect(points.find((p) => p.instrument === 'idem.claims')).toMatchObject({
    meter: 'idem',
    unit: '{claim}',
  });

  // never the raw key, anywhere
  expect(JSON.stringify([points, spans])).not.toContain('order-1');
});

it('in-progress conflicts, waits and releases', async () => {
  const { idem, store } = setup();
  // another instance on the same store waits through the store (the same instance shares in process)
  const other = setup(store).idem;
  let finish!: () => void;
  const slow = idem.run('k', () => new Promise<string>((r) => (finish = () => r('done'))));
  await sleep(20);
  await expect(idem.run('k', () => 'dup')).rejects.toBeInstanceOf(InProgressError);
  const joined = idem.run('k', () => 'dup', { onInProgress: 'wait' });
  const waiting = other.run('k', () => 'dup', { onInProgress: 'wait', waitTimeout: '5s' });
  await sleep(20);
  finish();
  expect(await slow).toBe('done');
  expect(await joined).toBe('done');
  expect(await waiting).toBe('done');
  expect(sum('idem.in_progress_conflicts')).toBe(1);
  expect(sum('idem.waits')).toBe(1);
  expect(sum('idem.replays', { 'idem.replay.shared': true })).toBe(1);
  expect(sum('idem.replays', { 'idem.replay.shared': false })).toBe(1);

  await expect(
    idem.run('fails', () => {
      throw new Error('boom');
    }),
  ).rejects.toThrow('boom');
  expect(sum('idem.releases')).toBe(1);
  expect(points.filter((p) => p.attributes['idem.outcome.error'] === true)).toHaveLength(0);
});

it('a takeover after a short lease: idem.takeovers, the claim attribute, attempt 2 and mayHaveRun on the span', async () => {
  const { idem, store } = setup();
  const { recordId } = idem.ids('crashy');
  // a holder that claimed with a 30 ms lease and crashed
  const first = await store.claim({
    id: recordId,
    fingerprint: '',
    leaseMs: 30,
    ttlMs: 60_000,
    token: 'gone',
  });
  expect(first.status).toBe('acquired');
  await sleep(80);
  const result = await idem.execute('crashy', (ctx) => ({
    attempt: ctx.attempt,
    mayHaveRun: ctx.mayHaveRun,
  }));
  expect(result.value).toEqual({ attempt: 2, mayHaveRun: true });
  expect(sum('idem.takeovers')).toBe(1);
  expect(sum('idem.claims', { 'idem.takeover': true })).toBe(1);
  expect(sum('idem.claims', { 'idem.takeover': false })).toBe(0);
  const span = spans.find((s) => s.name === 'idem.execute');
  expect(span?.attributes).toMatchObject({
    'idem.outcome': 'executed',
    'idem.attempt': 2,
    'idem.may_have_run': true,
  });
  expect(span?.events.map((e) => e.name)).toContain('idem.takeover');
});

it('store errors carry error.type on the counter and on the latency histogram; too large is counted', async () => {
  const base = memoryStore();
  const broken: Store = Object.assign(Object.create(base) as Store, {
    claim: () => Promise.reject(new Error('connection refused')),
  });
  const { idem } = setup(broken);
  await expect(idem.run('x', () => 1)).rejects.toThrow();
  expect(sum('idem.store_errors')).toBeGreaterThanOrEqual(1);
  expect(points.find((p) => p.instrument === 'idem.store_errors')?.attributes['error.type']).toBeTruthy();
  const failed = points.filter(
    (p) => p.instrument === 'idem.store.operation.duration' && p.attributes['error.type'] === 'Error',
  );
  expect(failed.length).toBeGreaterThanOrEqual(1);
  expect(spans.at(-1)).toMatchObject({ name: 'idem.run', attributes: { 'idem.outcome': 'error' } });

  // a holder whose outcome the store refuses (another holder's token now): the lease is lost
  const base2 = memoryStore();
  const lost = setup(Object.assign(Object.create(base2) as Store, { complete: async () => false })).idem;
  await expect(lost.run('lost', () => 1)).rejects.toThrow();
  expect(sum('idem.lease_lost')).toBe(1);
  expect(spans.at(-1)?.attributes).toMatchObject({ 'idem.outcome': 'executed', 'error.type': 'lease_lost' });

  const small = setup(memoryStore(), { maxOutcomeBytes: 16 }).idem;
  await expect(small.run('big', () => 'x'.repeat(100))).rejects.toThrow();
  expect(sum('idem.outcomes_too_large')).toBe(1);
});

it('spans: one per call, child of the app span, active inside the action; outcomes and status', async () => {
  const { idem } = setup();
  const app = trace.getTracer('app');
  let inside: string | undefined;
  const appSpanId = await app.startActiveSpan('POST /orders', async (span) => {
    await idem.run('o', () => {
      inside = trace.getActiveSpan()?.spanContext().spanId;
      // an app span started inside the action joins the idem span
      app.startSpan('charge').end();
      return 1;
    });
    await idem.run('o', () => 2);
    await idem.run('o', () => 3, { input: 'other' }).catch(() => {});
    span.end();
    return span.spanContext().spanId;
  });
  const [run1, charge, run2, run3, root] = spans;
  expect(spans.map((s) => s.name)).toEqual(['charge', 'idem.run', 'idem.run', 'idem.run', 'POST /orders']);
  expect(root!.spanId).toBe(appSpanId);
  for (const s of [charge, run1, run2, run3]) expect(s!.traceId).toBe(root!.traceId);
  const [chargeSpan, executed, replayed, mismatch] = [run1!, charge!, run2!, run3!];
  expect(executed.parentSpanId).toBe(appSpanId);
  expect(inside).toBe(executed.spanId);
  expect(chargeSpan.parentSpanId).toBe(executed.spanId);
  expect(executed.attributes).toEqual({
    'idem.outcome': 'executed',
    'idem.attempt': 1,
    'idem.may_have_run': false,
  });
  expect(executed.events.map((e) => e.name)).toEqual(['idem.acquired', 'idem.completed']);
  expect(replayed.attributes).toMatchObject({ 'idem.outcome': 'replayed', 'idem.attempt': 1 });
  expect(mismatch.attributes).toMatchObject({
    'idem.outcome': 'mismatch',
    'error.type': 'fingerprint_mismatch',
  });
  expect(mismatch.status?.code).toBe(2); // SpanStatusCode.ERROR
  expect(mismatch.exceptions).toHaveLength(1);
  expect(JSON.stringify(spans)).not.toMatch(/record_id/);
  expect(context.active()).toBeDefined();
});

it('record ids only when asked; options are checked', async () => {
  const store = memoryStore();
  const plain = createIdem({ store });
  const idem = traced(plain, { recordId: true });
  await idem.run('secret-key', () => 1);
  const { recordId } = plain.ids('secret-key');
  expect(spans[0]?.attributes['idem.record_id']).toBe(recordId);
  expect(JSON.stringify(spans)).not.toContain('secret-key');
  // the rest of the instance is the original
  expect(idem.ids('secret-key')).toEqual(plain.ids('secret-key'));

  // span events: off on request, the record id on them only when asked
  spans.length = 0;
  const quiet = otelInstrumentation({ spanEvents: false });
  await traced(createIdem({ store: memoryStore(), onEvent: quiet.onEvent })).run('q', () => 1);
  expect(spans[0]?.events).toEqual([]);
  spans.length = 0;
  const withIds = otelInstrumentation({ recordId: true });
  const ided = createIdem({ store: memoryStore(), onEvent: withIds.onEvent });
  await traced(ided).run('q', () => 1);
  expect(spans[0]?.events[0]).toEqual({
    name: 'idem.acquired',
    attributes: { 'idem.record_id': ided.ids('q').recordId, 'idem.attempt': 1 },
  });
  expect(spans[0]?.attributes['idem.record_id']).toBeUndefined();

  expect(() => traced(plain, { tracer: 'x' } as never)).toThrow(
    /unknown option "tracer" — did you mean tracerName\?/,
  );
  expect(() => otelInstrumentation({ meter: 'x' } as never)).toThrow(/did you mean meterName\?/);
  expect(() => otelInstrumentation({ zzzzzzzz: 1 } as never)).toThrow(
    /known: meterName, recordId, spanEvents/,
  );
  expect(() => otelInstrumentation({ recordId: 'yes' } as never)).toThrow(/recordId must be true or false/);
  expect(() => traced(plain, { tracerName: '' })).toThrow(/tracerName must be a non-empty string/);
  expect(() => otelInstrumentation(null as never)).toThrow(InvalidOptionError);
  expect(() => traced({} as never)).toThrow(InvalidOptionError);
});

/**
 * logEvents: the engine's events as pino JSON lines, with the active span's traceparent (the
 * in-memory providers of memory-otel.ts registered globally), at the documented levels, and
 * never the raw key or a store error's object.
 */
import { createIdem, InvalidOptionError, memoryStore, type Store } from 'idem';
import { activeTraceparent, logEvents, traced } from 'idem/otel';
import { pino } from 'pino';
import { beforeAll, beforeEach, expect, it } from 'vitest';
import { registerMemoryOtel, spans } from './memory-otel.ts';

const RAW_KEY = 'order-raw-key-5d1c';
beforeAll(() => {
  expect(registerMemoryOtel()).toBe(true);
});
beforeEach(() => {
  spans.length = 0;
});

function capture(level = 'debug') {
  const raw: string[] = [];
  const logger = pino({ level }, { write: (s: string) => void raw.push(s) });
  return { raw, logger, lines: () => raw.map((s) => JSON.parse(s) as Record<string, unknown>) };
}

it('each event is one JSON line with the span traceparent; replays at debug, never the raw key', async () => {
  const { raw, logger, lines } = capture();
  const idem = traced(createIdem({ store: memoryStore(), onEvent: logEvents(logger) }));
  await idem.execute(RAW_KEY, () => 1);
  await idem.execute(RAW_KEY, () => 2);
  expect(raw.join('')).not.toContain(RAW_KEY);
  const got = lines();
  expect(got.map((l) => [l.msg, l.level])).toEqual([
    ['idem acquired', 20],
    ['idem completed', 20],
    ['idem replayed', 20],
  ]);
  expect(spans).toHaveLength(2);
  const parent = (i: number) => `00-${spans[i]!.traceId}-${spans[i]!.spanId}-01`;
  expect(got[0]).toMatchObject({ event: 'acquired', attempt: 1, traceparent: parent(0) });
  expect(got[1]).toMatchObject({ event: 'completed', traceparent: parent(0) });
  expect(got[1]!.durationMs).toBeTypeOf('number');
  expect(got[2]).toMatchObject({ event: 'replayed', shared: false, traceparent: parent(1) });
  expect(got[0]!.recordId).toBe(got[2]!.recordId);
  expect(activeTraceparent()).toBeUndefined(); // outside any span
});

it('store errors at error with errorType (not the error object); a mismatch at warn; no span, no traceparent', async () => {
  const { logger, lines } = capture('info');
  const base = memoryStore();
  const failing: Store = {
    ...base,
    name: 'failing',
    claim: () => Promise.reject(new TypeError('no route to db')),
  };
  const broken = createIdem({ store: failing, onEvent: logEvents(logger) });
  await expect(broken.execute('k', () => 1)).rejects.toThrow();
  const working = createIdem({ store: base, onEvent: logEvents(logger) });
  await working.execute('k2', () => 1, { input: 1 });
  await expect(working.execute('k2', () => 1, { input: 2 })).rejects.toThrow();
  const got = lines();
  const storeError = got.find((l) => l.event === 'store_error');
  expect(storeError).toMatchObject({ level: 50, errorType: 'TypeError', msg: 'idem store_error' });
  expect(storeError).not.toHaveProperty('error');
  expect(storeError).not.toHaveProperty('traceparent');
  expect(got.find((l) => l.event === 'mismatch')).toMatchObject({ level: 40 });
  expect(got.some((l) => l.event === 'acquired')).toBe(false); // debug, below info
});

it('logEvents refuses what is not a logger', () => {
  expect(() => logEvents({} as never)).toThrow(InvalidOptionError);
  expect(() => logEvents(console as never)).not.toThrow();
});

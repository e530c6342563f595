/**
 * The stats recorder: events are counted in memory and written in one batch (not one write per
 * event), on its timer and on close; a failed write keeps every count for the next one, and the
 * part of a chunked write that failed is neither lost nor written twice.
 */
import { createIdem } from 'idem';
import { describe, expect, it } from 'vitest';
import type { CounterBatch, StoreCounters } from '../../src/core/counters.ts';
import { InvalidOptionError, StoreUnavailableError } from '../../src/core/errors.ts';
import { createStatsRecorder } from '../../src/core/stats-recorder.ts';
import type { Store } from '../../src/core/store.ts';
import { memoryStore } from '../../src/stores/memory/index.ts';

/** A memory store whose counters log every add and fail the ones `failing` says to. */
function spyStore(failing: (call: number, batch: CounterBatch) => boolean = () => false) {
  const store = memoryStore();
  const inner = store.counters!;
  const calls: CounterBatch[] = [];
  const counters: StoreCounters = {
    ...inner,
    async add(batch) {
      calls.push(structuredClone(batch));
      if (failing(calls.length, batch)) throw new StoreUnavailableError('down');
      return inner.add(batch);
    },
  };
  return { store: { ...store, counters } as Store, calls, inner };
}

const replayed = (recordId: string) => ({ type: 'replayed' as const, recordId, attempt: 1, shared: false });

describe('createStatsRecorder', () => {
  it('counts events in memory and writes them in one add on flush', async () => {
    const { store, calls, inner } = spyStore();
    const stats = createStatsRecorder(store, { flushMs: 60_000 });
    for (let i = 0; i < 100; i++) stats.onEvent(replayed(`r${i % 3}`));
    stats.onEvent({ type: 'in_progress', recordId: 'a' });
    stats.onEvent({ type: 'mismatch', recordId: 'a' });
    stats.onEvent({ type: 'takeover', recordId: 'a', attempt: 2 });
    stats.onEvent({ type: 'acquired', recordId: 'a', attempt: 1 }); // not counted
    expect(calls).toHaveLength(0);
    await stats.flush();
    expect(calls).toHaveLength(1);
    expect(await inner.read()).toMatchObject({ replays: 100, conflicts: 1, mismatches: 1, takeovers: 1 });
    expect(await inner.record('r0')).toMatchObject({ replays: 34 });
    await stats.flush(); // nothing new: no write
    expect(calls).toHaveLength(1);
    await stats.close();
  });

  it('writes on its own timer, and what is left on close', async () => {
    const { store, calls, inner } = spyStore();
    const stats = createStatsRecorder(store, { flushMs: 30 });
    stats.onEvent(replayed('x'));
    await new Promise((r) => setTimeout(r, 150));
    expect(calls).toHaveLength(1);
    stats.onEvent({ type: 'wait', recordId: 'x' });
    stats.onEvent({ type: 'released', recordId: 'x' });
    stats.onEvent({ type: 'lease_lost', recordId: 'x' });
    await stats.close();
    expect(calls).toHaveLength(2);
    expect(await inner.read()).toMatchObject({ replays: 1, waits: 1, releases: 1, lease_lost: 1 });
  });

  it('keeps the counts of a failed write, with those counted meanwhile, for the next one', async () => {
    const { store, inner } = spyStore((call) => call === 1);
    const errors: unknown[] = [];
    const stats = createStatsRecorder(store, { flushMs: 60_000, onError: (e) => errors.push(e) });
    stats.onEvent(replayed('k'));
    stats.onEvent(replayed('k'));
    await expect(stats.flush()).rejects.toThrow(StoreUnavailableError);
    stats.onEvent(replayed('k'));
    await stats.flush();
    expect(await inner.read()).toMatchObject({ replays: 3 });
    expect(await inner.record('k')).toMatchObject({ replays: 3 });
    await stats.close();
  });

  it('a failed chunk keeps itself and the chunks after it; the chunks before are not written again', async () => {
    const { store, calls, inner } = spyStore((call) => call === 2);
    const stats = createStatsRecorder(store, { flushMs: 60_000 });
    for (let i = 0; i < 250; i++) stats.onEvent(replayed(`id${String(i).padStart(3, '0')}`));
    await expect(stats.flush()).rejects.toThrow(StoreUnavailableError);
    expect(calls.map((c) => [c.buckets.length, c.records.length])).toEqual([
      [1, 100],
      [0, 100],
    ]);
    await stats.flush();
    expect(calls.slice(2).map((c) => [c.buckets.length, c.records.length])).toEqual([
      [0, 100],
      [0, 50],
    ]);
    expect(await inner.read()).toMatchObject({ replays: 250 });
    for (const id of ['id000', 'id150', 'id249'])
      expect(await inner.record(id)).toMatchObject({ replays: 1 });
  });

  it('counts each event in the minute it happened, also across writes', async () => {
    const { store, calls } = spyStore();
    const base = 1_764_000_000_000; // a whole minute
    let t = base + 59_999;
    const stats = createStatsRecorder(store, { flushMs: 60_000, now: () => t });
    stats.onEvent({ type: 'wait', recordId: 'a' });
    t = base + 60_000;
    stats.onEvent({ type: 'wait', recordId: 'a' });
    stats.onEvent({ type: 'wait', recordId: 'a' });
    t = base + 30_000; // a clock that steps back still lands in its own minute
    stats.onEvent({ type: 'wait', recordId: 'a' });
    await stats.flush();
    t = base + 61_000;
    stats.onEvent({ type: 'wait', recordId: 'a' }); // same minute as before the write
    await stats.close();
    expect(calls.map((c) => c.buckets)).toEqual([
      [
        { minute: base, name: 'waits', value: 2 },
        { minute: base + 60_000, name: 'waits', value: 2 },
      ],
      [{ minute: base + 60_000, name: 'waits', value: 1 }],
    ]);
  });

  it('close never rejects: a last write that fails goes to onError', async () => {
    const { store } = spyStore(() => true);
    const errors: unknown[] = [];
    const stats = createStatsRecorder(store, { onError: (e) => errors.push(e) });
    stats.onEvent(replayed('z'));
    await stats.close();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(StoreUnavailableError);
  });

  it('holds at most maxRecords per-record entries, dropping the first counted and counting them', async () => {
    const { store, inner } = spyStore();
    const stats = createStatsRecorder(store, { maxRecords: 3, flushMs: 60_000 });
    for (const id of ['a', 'b', 'c', 'a', 'd', 'e']) stats.onEvent(replayed(id));
    expect(stats.droppedRecords).toBe(2); // a, then b
    await stats.close();
    expect(await inner.read()).toMatchObject({ replays: 6 }); // the totals lose nothing
    expect(await inner.record('a')).toBeUndefined();
    expect(await inner.record('b')).toBeUndefined();
    expect(await inner.record('c')).toMatchObject({ replays: 1 });
    expect(await inner.record('e')).toMatchObject({ replays: 1 });
  });

  it('counts LLM savings: calls, tokens, and cost in micro-USD with fractions carried', async () => {
    const { store, inner } = spyStore();
    const stats = createStatsRecorder(store, { flushMs: 60_000 });
    for (let i = 0; i < 3; i++) {
      stats.llmSaved({ tokens: { input: 100, cached: 20, output: 7 }, costUsd: 0.0000004 });
    }
    stats.llmSaved({ tokens: { input: 1, cached: 0, output: 0 }, costUsd: undefined });
    stats.llmSaved({ tokens: { input: 0, cached: 0, output: 0 }, costUsd: 0.25 });
    await stats.close();
    expect(await inner.read()).toMatchObject({
      llm_calls_saved: 5,
      llm_tokens_saved_input: 301,
      llm_tokens_saved_cached: 60,
      llm_tokens_saved_output: 21,
      llm_cost_saved_microusd: 250_001, // 3 × 0.4 µ$ = 1.2 µ$ → 1, the 0.2 carried
    });
  });

  it('never throws into the caller on odd events, and refuses bad options and stores without counters', () => {
    const { store } = spyStore();
    const stats = createStatsRecorder(store);
    expect(() => stats.onEvent(undefined as never)).not.toThrow();
    expect(() => stats.onEvent({ type: 'nope' } as never)).not.toThrow();
    expect(() => stats.llmSaved(undefined as never)).not.toThrow();
    const { counters: _, ...bare } = memoryStore();
    expect(() => createStatsRecorder(bare as Store)).toThrow(InvalidOptionError);
    expect(() => createStatsRecorder(store, { flushMs: 0 })).toThrow(InvalidOptionError);
    expect(() => createStatsRecorder(store, { maxRecords: 1.5 })).toThrow(InvalidOptionError);
    return stats.close();
  });

  it('as createIdem({ onEvent }): replays of a key are kept in the store after close', async () => {
    const store = memoryStore();
    const stats = createStatsRecorder(store);
    const idem = createIdem({ store, onEvent: stats.onEvent });
    let runs = 0;
    for (let i = 0; i < 3; i++) await idem.run('order-1', async () => ++runs);
    await stats.close();
    expect(runs).toBe(1);
    expect((await store.counters!.read()).replays).toBe(2);
    expect(await store.counters!.record(idem.ids('order-1').recordId)).toMatchObject({ replays: 2 });
  });
});

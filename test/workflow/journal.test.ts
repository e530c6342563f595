/**
 * The run journal in one process, on the memory and SQLite stores: steps once per run + name +
 * occurrence, replays without running, divergence, stored run results, step error policy,
 * `runs.get`, the ambient run, and resume cost counted in store calls.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  activeRun,
  createIdem,
  DivergenceError,
  definitive,
  FingerprintMismatchError,
  type Idem,
  InvalidKeyError,
  InvalidOptionError,
  memoryStore,
  type Store,
} from 'idem';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'idem-journal-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A store that counts calls per method. */
function counting(store: Store): { store: Store; calls: Record<string, number>; reset(): void } {
  const calls: Record<string, number> = {};
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        calls[String(prop)] = (calls[String(prop)] ?? 0) + 1;
        return v.apply(target, args);
      };
    },
  });
  return {
    store: wrapped,
    calls,
    reset: () => {
      for (const k of Object.keys(calls)) delete calls[k];
    },
  };
}

const STORES: Array<[string, () => Store]> = [
  ['memory', () => memoryStore()],
  ['sqlite', () => sqliteStore({ path: join(dir, `j-${Math.random().toString(36).slice(2)}.db`) })],
];

class Transient extends Error {}

describe.each(STORES)('run journal on %s', (_name, makeStore) => {
  const fresh = (): Idem => createIdem({ store: makeStore(), lease: '2s' });

  it('runs each step once; a re-invoked run replays recorded steps without running them', async () => {
    const idem = fresh();
    const ran: string[] = [];
    let failAt3 = true;
    const body = async (run: import('idem').WorkflowRun) => {
      const a = await run.step('a', () => ran.push('a'));
      const b = await run.step('b', () => ran.push('b') + a - 1);
      await run.step('c', () => {
        ran.push('c');
        if (failAt3) throw new Transient('flaky');
        return b + 1;
      });
      return { a, b, steps: run.steps.map((s) => `${s.stepId}:${s.replayed ? 'replayed' : 'ran'}`) };
    };
    await expect(idem.workflow('order:1', body)).rejects.toThrow('flaky');
    failAt3 = false;
    const out = await idem.workflow('order:1', body);
    expect(ran).toEqual(['a', 'b', 'c', 'c']);
    expect(out).toEqual({ a: 1, b: 2, steps: ['a#1:replayed', 'b#1:replayed', 'c#1:ran'] });
    // a completed run replays its result: the body does not run again
    expect(await idem.workflow('order:1', body)).toEqual(out);
    expect(ran).toHaveLength(4);
    await idem.close();
  });

  it('numbers repeated names deterministically, in call order (loops and parallel steps)', async () => {
    const idem = fresh();
    const seen: string[] = [];
    const keys = new Set<string>();
    const out = await idem.workflow('loop:1', async (run) => {
      for (let i = 0; i < 3; i++)
        await run.step('item', (ctx) => {
          seen.push(ctx.stepId);
          keys.add(ctx.downstreamKey);
          return i;
        });
      return Promise.all([run.step('p', (ctx) => ctx.stepId), run.step('p', (ctx) => ctx.stepId)]);
    });
    expect(seen).toEqual(['item#1', 'item#2', 'item#3']);
    expect(keys.size).toBe(3);
    expect(out).toEqual(['p#1', 'p#2']);
    await idem.close();
  });

  it('a changed step input raises DivergenceError naming the step; the recorded outcome is kept', async () => {
    const idem = fresh();
    let amount = 10;
    let charged = 0;
    const body = async (run: import('idem').WorkflowRun) => {
      await run.step('charge', () => (charged += amount), { input: { amount } });
      throw new Transient('stop after charge');
    };
    await expect(idem.workflow('div:1', body)).rejects.toThrow('stop after charge');
    amount = 99;
    const err = await idem.workflow('div:1', body).catch((e) => e);
    expect(err).toBeInstanceOf(DivergenceError);
    expect(err.step).toBe('charge#1');
    expect(charged).toBe(10);
    amount = 10;
    await expect(idem.workflow('div:1', body)).rejects.toThrow('stop after charge');
    expect(charged).toBe(10);
    await idem.close();
  });

  it('a run key reused with another run input is a FingerprintMismatchError', async () => {
    const idem = fresh();
    await idem.workflow('in:1', async () => 1, { input: { a: 1 } });
    await expect(idem.workflow('in:1', async () => 1, { input: { a: 2 } })).rejects.toBeInstanceOf(
      FingerprintMismatchError,
    );
    await idem.close();
  });

  it('a definitive step error is recorded and replayed; a transient one lets the step run again', async () => {
    const idem = fresh();
    let runs = 0;
    const body = async (run: import('idem').WorkflowRun) =>
      run.step('refuse', () => {
        runs++;
        throw definitive(new Error('card declined'));
      });
    await expect(idem.workflow('def:1', body)).rejects.toThrow('card declined');
    await expect(idem.workflow('def:1', body)).rejects.toThrow('card declined');
    expect(runs).toBe(1);
    const info = await idem.runs.get('def:1');
    expect(info.status).toBe('failed');
    expect(info.steps.map((s) => [s.stepId, s.status])).toEqual([['refuse#1', 'failed']]);
    await idem.close();
  });

  it('runs.get lists the steps with status, attempts and timestamps', async () => {
    const idem = fresh();
    expect((await idem.runs.get('info:1')).status).toBe('absent');
    await idem.workflow('info:1', async (run) => {
      await run.step('x', () => 1);
      await run.step('y', () => 2);
      await run.step('x', () => 3);
    });
    const info = await idem.runs.get('info:1');
    expect(info.status).toBe('completed');
    expect(info.attempt).toBe(1);
    expect(info.steps.map((s) => [s.name, s.occurrence, s.status, s.attempts])).toEqual([
      ['x', 1, 'completed', 1],
      ['y', 1, 'completed', 1],
      ['x', 2, 'completed', 1],
    ]);
    for (const s of info.steps) expect(s.completedAt).toBeGreaterThanOrEqual(s.startedAt);
    await idem.close();
  });

  it('tools inside the body see the run through activeRun(), and record as its steps', async () => {
    const idem = fresh();
    expect(activeRun()).toBeUndefined();
    let calls = 0;
    const tool = (args: { q: string }) => {
      const run = activeRun();
      return run ? run.step('tool:search', () => `found ${args.q} (${++calls})`, { input: args }) : 'no run';
    };
    const body = async () => [await tool({ q: 'a' }), await tool({ q: 'b' })];
    expect(await idem.workflow('amb:1', body)).toEqual(['found a (1)', 'found b (2)']);
    expect((await idem.runs.get('amb:1')).steps.map((s) => s.stepId)).toEqual([
      'tool:search#1',
      'tool:search#2',
    ]);
    expect(calls).toBe(2);
    await idem.close();
  });

  it('resuming costs one store call per recorded step (the claim that finds it completed)', async () => {
    const c = counting(makeStore());
    const idem = createIdem({ store: c.store, lease: '2s' });
    let crash = true;
    const body = async (run: import('idem').WorkflowRun) => {
      for (let i = 0; i < 50; i++) await run.step('s', () => i);
      if (crash) throw new Transient('crash');
      return 'done';
    };
    await expect(idem.workflow('cost:1', body)).rejects.toThrow('crash');
    crash = false;
    c.reset();
    expect(await idem.workflow('cost:1', body)).toBe('done');
    // run: claim + complete; steps: one claim each; no renewals within 2 s
    expect(c.calls).toEqual({ claim: 51, complete: 1 });
    c.reset();
    expect(await idem.workflow('cost:1', body)).toBe('done');
    expect(c.calls).toEqual({ claim: 1 });
    await idem.close();
  });

  it('refuses bad input with typed errors', async () => {
    const idem = fresh();
    await expect(idem.workflow('', async () => 1)).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(idem.workflow('k', async () => 1, { leese: '1s' } as never)).rejects.toThrow(
      /unknown workflow option leese — did you mean lease/,
    );
    await expect(idem.workflow('k', 'nope' as never)).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(idem.workflow('k2', (run) => run.step('', () => 1))).rejects.toBeInstanceOf(InvalidKeyError);
    await idem.close();
  });
});

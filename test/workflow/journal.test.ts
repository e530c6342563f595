/**
 * The run journal in one process, on the memory, SQLite, Postgres and Redis stores: steps once per run + name +
 * occurrence, replays without running, divergence, stored run results, step error policy,
 * `runs.get`, the ambient run, and resume cost counted in store calls.
 */
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
  LeaseLostError,
  memoryStore,
} from 'idem';
import { describe, expect, it } from 'vitest';
import { counting, dir, rk, STORES } from './fixtures/stores.ts';

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
    await expect(idem.workflow(rk('order'), body)).rejects.toThrow('flaky');
    const between = await idem.runs.get(rk('order'));
    expect(between.status).toBe('released'); // a transient error released the run
    expect(between.steps.map((s) => `${s.stepId}:${s.status}`)).toEqual([
      'a#1:completed',
      'b#1:completed',
      'c#1:released',
    ]);
    failAt3 = false;
    const out = await idem.workflow(rk('order'), body);
    expect(ran).toEqual(['a', 'b', 'c', 'c']);
    expect(out).toEqual({ a: 1, b: 2, steps: ['a#1:replayed', 'b#1:replayed', 'c#1:ran'] });
    // a completed run replays its result: the body does not run again
    expect(await idem.workflow(rk('order'), body)).toEqual(out);
    expect(ran).toHaveLength(4);
    await idem.close();
  });

  it('numbers repeated names deterministically, in call order (loops and parallel steps)', async () => {
    const idem = fresh();
    const seen: string[] = [];
    const keys = new Set<string>();
    const out = await idem.workflow(rk('loop'), async (run) => {
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
    await expect(idem.workflow(rk('div'), body)).rejects.toThrow('stop after charge');
    amount = 99;
    const err = await idem.workflow(rk('div'), body).catch((e) => e);
    expect(err).toBeInstanceOf(DivergenceError);
    expect(err.step).toBe('charge#1');
    expect(charged).toBe(10);
    amount = 10;
    await expect(idem.workflow(rk('div'), body)).rejects.toThrow('stop after charge');
    expect(charged).toBe(10);
    await idem.close();
  });

  it('a run key reused with another run input is a FingerprintMismatchError', async () => {
    const idem = fresh();
    await idem.workflow(rk('in'), async () => 1, { input: { a: 1 } });
    await expect(idem.workflow(rk('in'), async () => 1, { input: { a: 2 } })).rejects.toBeInstanceOf(
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
    await expect(idem.workflow(rk('def'), body)).rejects.toThrow('card declined');
    await expect(idem.workflow(rk('def'), body)).rejects.toThrow('card declined');
    expect(runs).toBe(1);
    const info = await idem.runs.get(rk('def'));
    expect(info.status).toBe('failed');
    expect(info.steps.map((s) => [s.stepId, s.status])).toEqual([['refuse#1', 'failed']]);
    await idem.close();
  });

  it('a step value that cannot be stored is recorded as a TypeError, and not run again', async () => {
    const idem = fresh();
    let runs = 0;
    const body = (run: import('idem').WorkflowRun) =>
      run.step('fn', () => {
        runs++;
        return { callback: () => 1 };
      });
    await expect(idem.workflow(rk('unstorable'), body)).rejects.toThrow(/cannot be stored/);
    await expect(idem.workflow(rk('unstorable'), body)).rejects.toThrow(/cannot be stored/);
    expect(runs).toBe(1);
    await idem.close();
  });

  it('runs.get lists the steps with status, attempts and timestamps', async () => {
    const idem = fresh();
    expect((await idem.runs.get(rk('info'))).status).toBe('absent');
    await idem.workflow(rk('info'), async (run) => {
      await run.step('x', () => 1);
      await run.step('y', () => 2);
      await run.step('x', () => 3);
    });
    const info = await idem.runs.get(rk('info'));
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

  it('runs.get on a run in progress: running, with the steps recorded so far', async () => {
    const idem = fresh();
    await idem.workflow(rk('live'), async (run) => {
      await run.step('first', () => 1);
      const info = await idem.runs.get(rk('live'));
      expect(info.status).toBe('running');
      expect(info.steps.map((s) => `${s.stepId}:${s.status}`)).toEqual(['first#1:completed']);
      await run.step('second', async () => {
        // the index slot is claimed while the step runs (not before it): poll until it lands
        let mid = await idem.runs.get(rk('live'));
        for (let i = 0; i < 100 && mid.steps.length < 2; i++) {
          await new Promise((r) => setTimeout(r, 20));
          mid = await idem.runs.get(rk('live'));
        }
        expect(mid.steps.map((s) => `${s.stepId}:${s.status}`)).toEqual([
          'first#1:completed',
          'second#1:running',
        ]);
      });
    });
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
    expect(await idem.workflow(rk('amb'), body)).toEqual(['found a (1)', 'found b (2)']);
    expect((await idem.runs.get(rk('amb'))).steps.map((s) => s.stepId)).toEqual([
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
    await expect(idem.workflow(rk('cost'), body)).rejects.toThrow('crash');
    crash = false;
    c.reset();
    expect(await idem.workflow(rk('cost'), body)).toBe('done');
    // run: claim + complete; steps: one claim each; no renewals within 2 s
    expect(c.calls).toEqual({ claim: 51, complete: 1 });
    c.reset();
    expect(await idem.workflow(rk('cost'), body)).toBe('done');
    expect(c.calls).toEqual({ claim: 1 });
    await idem.close();
  });

  it('scope separates runs of one key; exclude leaves fields out of step fingerprints', async () => {
    const idem = fresh();
    let runs = 0;
    const body = (traceId: string) => async (run: import('idem').WorkflowRun) => {
      expect(run.id).toBe(rk('scoped'));
      return run.step('s', () => ++runs, { input: { amount: 5, traceId } });
    };
    const opts = (tenant: string) => ({ scope: tenant, exclude: ['traceId'] });
    expect(await idem.workflow(rk('scoped'), body('t1'), opts('tenant-a'))).toBe(1);
    expect(await idem.workflow(rk('scoped'), body('t2'), opts('tenant-b'))).toBe(2);
    expect((await idem.runs.get(rk('scoped'), { scope: 'tenant-a' })).steps).toHaveLength(1);
    expect((await idem.runs.get(rk('scoped'))).status).toBe('absent');
    // a released run of tenant-a replays its step although the trace id changed (excluded)
    const again = await idem
      .workflow(
        rk('scoped2'),
        async (run) => {
          await run.step('s', () => ++runs, { input: { amount: 5, traceId: 'x' } });
          throw new Transient('retry me');
        },
        opts('tenant-a'),
      )
      .catch((e) => e);
    expect(again).toBeInstanceOf(Transient);
    const replayed = await idem.workflow(
      rk('scoped2'),
      (run) => run.step('s', () => ++runs, { input: { amount: 5, traceId: 'y' } }),
      opts('tenant-a'),
    );
    expect(replayed).toBe(3);
    expect(runs).toBe(3);
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
    await expect(idem.workflow('k3', (run) => run.step('s', () => 1, { inptu: 1 } as never))).rejects.toThrow(
      /unknown step option inptu — did you mean input/,
    );
    await expect(
      idem.workflow('k4', (run) => run.tx('t', {} as never, () => 1, { tabel: 'x' } as never)),
    ).rejects.toThrow(/unknown run.tx option tabel — did you mean table/);
    await idem.close();
  });
});

describe('the run fence', () => {
  it('an invocation that lost its run writes no step: the step stays in progress for the next holder', async () => {
    const inner = memoryStore();
    let steal = false;
    // the run's renewals are refused once "stolen", as when another process took the run over
    const store = new Proxy(inner, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target);
        if (prop === 'renew')
          return async (...a: [string, string, number]) => (steal ? undefined : v.apply(target, a));
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const idem = createIdem({ store, lease: 200 });
    const ran: number[] = [];
    const err = await idem
      .workflow(rk('fence'), async (run) => {
        await run.step('one', () => ran.push(1));
        await run.step('two', async () => {
          steal = true;
          await new Promise((r) => setTimeout(r, 150)); // past half the lease: the fence must ask the store
          return ran.push(2);
        });
        await run.step('three', () => ran.push(3));
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect(ran).toEqual([1, 2]);
    const info = await idem.runs.get(rk('fence'));
    expect(info.steps.map((s) => [s.stepId, s.status === 'completed'])).toEqual([
      ['one#1', true],
      ['two#1', false],
    ]);
    steal = false;
    await new Promise((r) => setTimeout(r, 250)); // the lost invocation's leases run out
    const seen: string[] = [];
    await idem.workflow(rk('fence'), async (run) => {
      await run.step('one', () => seen.push('one'));
      await run.step('two', (ctx) => seen.push(`two:${ctx.attempt}:${ctx.mayHaveRun}`));
      await run.step('three', () => seen.push('three'));
    });
    expect(seen).toEqual(['two:2:true', 'three']);
    await idem.close();
  });
});

describe('run.tx and the run fence', () => {
  it('an invocation that lost its run rolls its transaction back instead of committing', async () => {
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(join(dir, 'tx-fence.db'));
    db.exec('CREATE TABLE effects (n INTEGER)');
    const inner = memoryStore();
    let steal = false;
    const store = new Proxy(inner, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target);
        if (prop === 'renew')
          return async (...a: [string, string, number]) => (steal ? undefined : v.apply(target, a));
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const idem = createIdem({ store, lease: 200 });
    const err = await idem
      .workflow(rk('txfence'), (run) =>
        run.tx('insert', db, async (d) => {
          d.prepare('INSERT INTO effects (n) VALUES (1)').run();
          steal = true;
          await new Promise((r) => setTimeout(r, 150));
          return 'inserted';
        }),
      )
      .catch((e) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect((db.prepare('SELECT count(*) AS n FROM effects').get() as { n: number }).n).toBe(0);
    expect(db.isTransaction).toBe(false);
    db.close();
    await idem.close();
  });
});

describe('run.tx on node:sqlite', () => {
  it('commits the effect with the step record; a failed fn rolls both back; a recorded tx step replays', async () => {
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(join(dir, 'tx.db'));
    db.exec('CREATE TABLE effects (n INTEGER)');
    const idem = createIdem({ store: memoryStore() });
    let fail = true;
    const body = async (run: import('idem').WorkflowRun) => {
      const v = await run.tx('insert', db, (d) => {
        d.prepare('INSERT INTO effects (n) VALUES (1)').run();
        if (fail) throw new Transient('after the insert');
        return 'inserted';
      });
      return v;
    };
    await expect(idem.workflow(rk('sqltx'), body)).rejects.toThrow('after the insert');
    const count = () => (db.prepare('SELECT count(*) AS n FROM effects').get() as { n: number }).n;
    expect(count()).toBe(0);
    fail = false;
    expect(await idem.workflow(rk('sqltx'), body)).toBe('inserted');
    expect(count()).toBe(1);
    // the same run on a store that lost its records (a crash after COMMIT, before the store write):
    // the tx row answers, the insert does not run again
    const other = createIdem({ store: memoryStore() });
    expect(await other.workflow(rk('sqltx'), body)).toBe('inserted');
    expect(count()).toBe(1);
    await expect(
      idem.workflow(rk('sqltx2'), (run) => run.tx('x', {} as never, () => 1)),
    ).rejects.toBeInstanceOf(InvalidOptionError);
    db.close();
    await idem.close();
  });
});

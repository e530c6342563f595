/**
 * Findings from an outside tryout: a `run` used after its body settled, `run.tx` on a client
 * already inside a transaction (Postgres and SQLite), `retryAfterMs` after a workflow wait
 * timeout, and `runs.get`'s `attempt` for a released run.
 */
import { DatabaseSync } from 'node:sqlite';
import {
  createIdem,
  definitive,
  InProgressError,
  InvalidOptionError,
  memoryStore,
  type WorkflowRun,
} from 'idem';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordIdOf } from '../../src/core/keys.ts';
import { serviceAvailable, uniqueName } from '../helpers/services.ts';
import { adminPool, dropSchema, PG_URL } from '../stores/fixtures/postgres-suite.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a run whose body settled', () => {
  it.each([
    ['completed', async () => 1],
    [
      'failed',
      async () => {
        throw definitive(new Error('no'));
      },
    ],
    [
      'released',
      async () => {
        throw new Error('transient');
      },
    ],
  ])('refuses run.step and run.tx once %s, without running fn or writing', async (_, end) => {
    const idem = createIdem({ store: memoryStore() });
    let saved: WorkflowRun | undefined;
    await idem
      .workflow('wf:late', async (run) => {
        saved = run;
        await run.step('early', () => 'e');
        return end();
      })
      .catch(() => {});
    let ran = 0;
    await expect(saved!.step('late', () => ++ran)).rejects.toThrow(InvalidOptionError);
    await expect(saved!.step('late', () => ++ran)).rejects.toThrow(/is over/);
    const db = new DatabaseSync(':memory:');
    await expect(saved!.tx('late-tx', db, () => ++ran)).rejects.toThrow(InvalidOptionError);
    expect(ran).toBe(0);
    const info = await idem.runs.get('wf:late');
    expect(info.steps.map((s) => s.stepId)).toEqual(['early#1']);
    db.close();
    await idem.close();
  });

  it('a step started but not awaited by the body records nothing once the body settled', async () => {
    const idem = createIdem({ store: memoryStore() });
    let pending: Promise<unknown> | undefined;
    let aborted = false;
    let started = () => {};
    const fnStarted = new Promise<void>((r) => {
      started = r;
    });
    const result = await idem.workflow('wf:noawait', async (run) => {
      pending = run.step('slow', async (ctx) => {
        started();
        await sleep(100);
        aborted = ctx.signal.aborted;
        return 'x';
      });
      pending.catch(() => {}); // the test awaits it below
      await fnStarted; // the body returns while fn runs
      return 'done';
    });
    expect(result).toBe('done');
    await expect(pending).rejects.toThrow(/is over/);
    expect(aborted).toBe(true);
    const info = await idem.runs.get('wf:noawait');
    expect(info.status).toBe('completed');
    expect(info.steps.map((s) => [s.stepId, s.status])).toEqual([['slow#1', 'released']]);
    await idem.close();
  });

  it('a step still waiting for its turn when the body settled does not run its fn', async () => {
    const store = memoryStore();
    const idem = createIdem({ store });
    // a frozen earlier invocation holds the step for 150 ms more
    const stepId = recordIdOf(['idem.workflow.step', 'wf:waiting'], 'slow#1');
    await store.claim({ id: stepId, fingerprint: '', leaseMs: 150, ttlMs: 60_000, token: 'frozen' });
    let pending: Promise<unknown> | undefined;
    let ran = 0;
    await idem.workflow('wf:waiting', async (run) => {
      pending = run.step('slow', () => ++ran);
      pending.catch(() => {});
      return 'done';
    });
    await expect(pending).rejects.toThrow(/is over/);
    expect(ran).toBe(0);
    await idem.close();
  });
});

describe('retryAfterMs and attempt', () => {
  it('a workflow wait timeout answers the holder lease left, like a plain key', async () => {
    const idem = createIdem({ store: memoryStore(), lease: '3s' });
    const p = idem.workflow('w-wait', async () => {
      await sleep(400);
      return 'first';
    });
    const q = idem.run('k-wait', async () => {
      await sleep(400);
      return 'first';
    });
    const wf = await idem
      .workflow('w-wait', async () => 'second', { onInProgress: 'wait', waitTimeout: 100 })
      .catch((e) => e);
    const plain = await idem
      .run('k-wait', async () => 'second', { onInProgress: 'wait', waitTimeout: 100 })
      .catch((e) => e);
    expect(wf).toBeInstanceOf(InProgressError);
    expect(plain).toBeInstanceOf(InProgressError);
    for (const e of [wf, plain]) {
      expect(e.retryAfterMs).toBeGreaterThan(0);
      expect(e.retryAfterMs).toBeLessThanOrEqual(3000);
    }
    expect(Math.abs(wf.retryAfterMs - plain.retryAfterMs)).toBeLessThan(1000);
    await Promise.all([p, q]);
    await idem.close();
  });

  it('runs.get reports attempt 1 for a run released by its first attempt, as for a failed one', async () => {
    const idem = createIdem({ store: memoryStore() });
    await idem
      .workflow('w-rel', async () => {
        throw new Error('transient');
      })
      .catch(() => {});
    await idem
      .workflow('w-fail', async () => {
        throw definitive(new Error('no'));
      })
      .catch(() => {});
    const rel = await idem.runs.get('w-rel');
    const failed = await idem.runs.get('w-fail');
    expect([rel.status, rel.attempt]).toEqual(['released', 1]);
    expect([failed.status, failed.attempt]).toEqual(['failed', 1]);
    await idem.close();
  });

  it('runs.get reports a run released after a takeover as released, with its attempt', async () => {
    const store = memoryStore();
    const idem = createIdem({ store });
    const id = recordIdOf(['idem.workflow'], 'w-take');
    const claim = (token: string) => store.claim({ id, fingerprint: '', leaseMs: 30, ttlMs: 60_000, token });
    expect((await claim('t1')).status).toBe('acquired');
    await sleep(60); // t1's holder froze: its lease ran out
    const taken = await claim('t2');
    expect(taken.status === 'acquired' && taken.attempt).toBe(2);
    expect(await store.release(id, 't2')).toBe(true); // the takeover threw a transient error
    const info = await idem.runs.get('w-take');
    expect([info.status, info.attempt]).toEqual(['released', 2]);
    await idem.close();
  });
});

describe('run.tx on a client already in a transaction', () => {
  it('sqlite: refused with InvalidOptionError; the caller transaction is left open and untouched', async () => {
    const idem = createIdem({ store: memoryStore() });
    const db = new DatabaseSync(':memory:');
    db.exec('CREATE TABLE led (id TEXT)');
    db.exec('BEGIN');
    db.exec(`INSERT INTO led VALUES ('outer')`);
    let ran = 0;
    const e = await idem.workflow('tx-nested', (run) => run.tx('w', db, () => ++ran)).catch((err) => err);
    expect(e).toBeInstanceOf(InvalidOptionError);
    expect(e.message).toMatch(/already in a transaction/);
    expect(ran).toBe(0);
    expect(db.isTransaction).toBe(true);
    db.exec('ROLLBACK');
    expect(db.prepare('SELECT count(*) AS n FROM led').get()).toEqual({ n: 0 });
    db.close();
    await idem.close();
  });
});

const up = await serviceAvailable('postgres');

describe.skipIf(!up)('run.tx on a pg client already in a transaction', () => {
  const schema = uniqueName('idem_wfover');
  const admin = adminPool();
  beforeAll(async () => {
    await admin.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await admin.query(`CREATE TABLE "${schema}".led (id text)`);
  });
  afterAll(async () => {
    await dropSchema(admin, schema);
    await admin.end();
  });

  it.each([
    ['getTransactionStatus', (c: pg.Client) => c],
    // an older pg without getTransactionStatus: detected from now() vs statement_timestamp()
    ['a timestamp query', (c: pg.Client) => ({ query: c.query.bind(c), connect: c.connect.bind(c) })],
  ])('refused (detected by %s); the caller ROLLBACK still undoes its own write', async (_, wrap) => {
    const idem = createIdem({ store: memoryStore() });
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    const table = `"${schema}".led`.replaceAll('"', '');
    await c.query('BEGIN');
    await c.query(`INSERT INTO ${table} VALUES ('outer')`);
    let ran = 0;
    const client = wrap(c) as pg.Client;
    const e = await idem
      .workflow(`tx-nested-${_}`, (run) => run.tx('w', client, () => ++ran, { table: `${schema}.jtx` }))
      .catch((err) => err);
    expect(e).toBeInstanceOf(InvalidOptionError);
    expect(e.message).toMatch(/already in a transaction/);
    expect(ran).toBe(0);
    await c.query('ROLLBACK');
    expect((await c.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]).toEqual({ n: 0 });
    // outside a transaction the same client works
    expect(
      await idem.workflow(`tx-ok-${_}`, (run) =>
        run.tx('w', client, () => ++ran, { table: `${schema}.jtx` }),
      ),
    ).toBe(1);
    await c.end();
    await idem.close();
  });
});

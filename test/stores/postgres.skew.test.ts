/**
 * App clocks skewed by minutes change nothing: child processes run with Date shifted by
 * ±10 minutes (postgres-clock-skew.ts via --import), and leases still begin, hold and end on
 * the database clock.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresStore } from '../../src/stores/postgres/index.ts';
import { serviceAvailable, uniqueName } from '../helpers/services.ts';
import { adminPool, dropSchema, PG_URL } from './fixtures/postgres-suite.ts';

const up = await serviceAvailable('postgres');
const TEN_MIN = 10 * 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

interface Child {
  ask(cmd: Record<string, unknown>): Promise<Record<string, unknown>>;
  proc: ChildProcess;
}

function startChild(skewMs: number, schema: string): Child {
  const proc = spawn(
    process.execPath,
    [
      '--conditions=idem-source',
      '--import',
      fixture('postgres-clock-skew.ts'),
      fixture('postgres-skew-child.ts'),
      JSON.stringify({ connectionString: PG_URL, schema }),
    ],
    { env: { ...process.env, IDEM_CLOCK_SKEW_MS: String(skewMs) }, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  let queue = Promise.resolve();
  return {
    proc,
    ask(cmd) {
      const answer = queue.then(async () => {
        proc.stdin!.write(`${JSON.stringify(cmd)}\n`);
        const next = await lines.next();
        if (next.done) throw new Error('child exited');
        return JSON.parse(next.value) as Record<string, unknown>;
      });
      queue = answer.then(
        () => {},
        () => {},
      );
      return answer;
    },
  };
}

describe.skipIf(!up)('postgres store: app clocks skewed by minutes', () => {
  const schema = uniqueName('idem_pg_skew');
  const admin = up ? adminPool() : (undefined as never);
  let ahead: Child; // +10 min
  let behind: Child; // -10 min
  const dbNow = async () =>
    Number(
      (await admin.query('SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS t')).rows[0].t,
    );

  beforeAll(async () => {
    const s = postgresStore({ connectionString: PG_URL, schema });
    await s.ready();
    await s.close();
    ahead = startChild(TEN_MIN, schema);
    behind = startChild(-TEN_MIN, schema);
  });
  afterAll(async () => {
    for (const c of [ahead, behind]) {
      c.proc.stdin!.end(`${JSON.stringify({ op: 'exit' })}\n`);
      await new Promise((r) => c.proc.once('exit', r));
    }
    await dropSchema(admin, schema);
    await admin.end();
  });

  it('the children really run on skewed clocks', async () => {
    expect(Number((await ahead.ask({ op: 'now' })).now) - Date.now()).toBeGreaterThan(TEN_MIN - 5000);
    expect(Date.now() - Number((await behind.ask({ op: 'now' })).now)).toBeGreaterThan(TEN_MIN - 5000);
  });

  it('store level: the lease starts, holds and ends on the database clock', async () => {
    const id = `skew-${randomUUID()}`;
    const claim = (token: string) => ({
      op: 'claim',
      req: { id, fingerprint: 'f', leaseMs: 1500, ttlMs: 60_000, token },
    });
    const before = await dbNow();
    const first = await ahead.ask(claim('ahead-1'));
    expect(first).toMatchObject({ status: 'acquired', attempt: 1 });
    expect(Number(first.leaseUntil)).toBeGreaterThanOrEqual(before + 1500);
    expect(Number(first.leaseUntil)).toBeLessThan((await dbNow()) + 1500); // not shifted by +10 min

    // the clock 10 minutes ahead cannot make the lease look over; the one behind cannot stretch it
    expect(await behind.ask(claim('behind-1'))).toMatchObject({ status: 'existing' });
    await sleep(900);
    const renewed = await ahead.ask({ op: 'renew', id, token: 'ahead-1', leaseMs: 1500 });
    expect(Number(renewed.leaseUntil)).toBeLessThan((await dbNow()) + 1500);
    await sleep(900); // past the first lease, inside the renewed one
    expect(await behind.ask(claim('behind-2'))).toMatchObject({ status: 'existing' });
    await sleep(800); // past the renewed lease
    expect(await behind.ask(claim('behind-3'))).toMatchObject({
      status: 'acquired',
      attempt: 2,
      takeover: true,
    });
    expect(await ahead.ask({ op: 'complete', id, token: 'ahead-1', outcome: 'zombie' })).toEqual({
      ok: false,
    });
    expect(await behind.ask({ op: 'complete', id, token: 'behind-3', outcome: 'won' })).toEqual({ ok: true });
  });

  for (const [holderName, takerName] of [
    ['behind', 'ahead'],
    ['ahead', 'behind'],
  ] as const) {
    it(`engine level: a holder ${holderName} by 10 min keeps its renewed lease against a caller ${takerName} by 10 min`, async () => {
      const holder = holderName === 'ahead' ? ahead : behind;
      const taker = takerName === 'ahead' ? ahead : behind;
      const key = `skew-run-${randomUUID()}`;
      const held = holder.ask({ op: 'run', key, leaseMs: 600, holdMs: 2200 });
      await sleep(300);
      for (let i = 0; i < 3; i++) {
        // with app clocks, the caller ahead would see this 600 ms lease as 10 minutes over
        expect(await taker.ask({ op: 'run', key, leaseMs: 600, holdMs: 0 })).toMatchObject({
          inProgress: true,
        });
        await sleep(600);
      }
      const done = await held;
      expect(done).toMatchObject({ replayed: false, attempt: 1 });
      expect(await taker.ask({ op: 'run', key, leaseMs: 600, holdMs: 0 })).toEqual({
        value: done.value,
        replayed: true,
        attempt: 1,
      });
    });
  }
});

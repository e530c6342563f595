/**
 * Outages against a real Postgres: statements stuck behind locks, a server that accepts
 * connections and never answers, a closed port, and backends killed with
 * pg_terminate_backend mid-use. Every failure must be a StoreUnavailableError within the
 * configured timeout, and the same store must recover without a restart.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIdem } from '../../src/core/engine.ts';
import { StoreUnavailableError } from '../../src/core/errors.ts';
import type { ClaimRequest } from '../../src/core/store.ts';
import { type PostgresStore, postgresStore } from '../../src/stores/postgres/index.ts';
import { serviceAvailable, uniqueName } from '../helpers/services.ts';
import { startProxy } from './fixtures/postgres-proxy.ts';
import { adminPool, dropSchema, PG_URL, until } from './fixtures/postgres-suite.ts';

const up = await serviceAvailable('postgres');
const DAY = 86_400_000;
const TIMEOUT = 600;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const req = (over: Partial<ClaimRequest> = {}): ClaimRequest => ({
  id: `k-${randomUUID()}`,
  fingerprint: 'fp',
  leaseMs: 30_000,
  ttlMs: DAY,
  token: randomUUID(),
  ...over,
});

/** Runs `op`, answering how long it took and what it threw. */
async function timed(op: () => Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  try {
    await op();
    return { ms: performance.now() - start, error: undefined };
  } catch (error) {
    return { ms: performance.now() - start, error };
  }
}

describe.skipIf(!up)('postgres store outages', () => {
  const schema = uniqueName('idem_pg_out');
  const admin = up ? adminPool() : (undefined as never);
  const table = `"${schema}".idem_records`;
  const terminate = (app: string) =>
    admin.query(
      'SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1',
      [app],
    );
  const lockWaiters = async (app: string) =>
    Number(
      (
        await admin.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
          [app],
        )
      ).rows[0].n,
    );

  beforeAll(async () => {
    const s = postgresStore({ connectionString: PG_URL, schema });
    await s.ready();
    await s.close();
  });
  afterAll(async () => {
    await dropSchema(admin, schema);
    await admin.end();
  });

  /** The two ways to give the store a pool: the user's own, or a connection string. */
  const variants: [string, (app: string) => { store: PostgresStore; end: () => Promise<void> }][] = [
    [
      "user's pg.Pool (no server statement_timeout)",
      (app) => {
        const pool = new pg.Pool({ connectionString: PG_URL, application_name: app, max: 4 });
        pool.on('error', () => {});
        const store = postgresStore({ pool, schema, statementTimeout: TIMEOUT });
        const end = async () => {
          await store.close();
          await pool.end();
        };
        return { store, end };
      },
    ],
    [
      'pool from a connection string',
      (app) => {
        const store = postgresStore({
          connectionString: `${PG_URL}?application_name=${app}`,
          schema,
          statementTimeout: TIMEOUT,
          max: 4,
        });
        return { store, end: () => store.close() };
      },
    ],
  ];

  for (const [variant, make] of variants) {
    describe(variant, () => {
      it('a statement stuck behind a row lock: StoreUnavailableError within statementTimeout, then recovery', async () => {
        const app = `idem-stuck-${randomUUID().slice(0, 8)}`;
        const { store, end } = make(app);
        const holder = await admin.connect();
        try {
          const r = req();
          await store.claim(r);
          await holder.query('BEGIN');
          await holder.query(`SELECT 1 FROM ${table} WHERE id = $1 FOR UPDATE`, [r.id]);
          for (const op of [
            () => store.complete(r.id, r.token, 'x', DAY),
            () => store.renew(r.id, r.token, 30_000),
            () => store.claim({ ...r, leaseMs: 0, token: randomUUID() }), // lease over: tries to take it
          ]) {
            const { ms, error } = await timed(op);
            expect(error).toBeInstanceOf(StoreUnavailableError);
            expect(ms).toBeGreaterThanOrEqual(TIMEOUT - 50);
            expect(ms).toBeLessThan(TIMEOUT + 400);
          }
          expect(await store.get(r.id)).toBeDefined(); // reads never wait for row locks
          const other = req();
          expect((await store.claim(other)).status).toBe('acquired');
          expect(await store.complete(other.id, other.token, 'ok', DAY)).toBe(true);
        } finally {
          await holder.query('ROLLBACK');
          holder.release();
          await end();
        }
      });

      it('a table locked by another connection: every operation fails in time; the engine never runs the action', async () => {
        const app = `idem-lock-${randomUUID().slice(0, 8)}`;
        const { store, end } = make(app);
        const holder = await admin.connect();
        try {
          await store.get('warm-up');
          await holder.query('BEGIN');
          await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
          const results = await Promise.all([
            timed(() => store.get('x')),
            timed(() => store.claim(req())),
            timed(() => store.purgeExpired(10)),
          ]);
          for (const { ms, error } of results) {
            expect(error).toBeInstanceOf(StoreUnavailableError);
            expect(ms).toBeLessThan(TIMEOUT + 400);
          }
          let ran = false;
          const idem = createIdem({ store, lease: 30_000 });
          const { error } = await timed(() => idem.run(`k-${randomUUID()}`, () => (ran = true)));
          expect(error).toBeInstanceOf(StoreUnavailableError);
          expect(ran).toBe(false);
          await holder.query('ROLLBACK');
          expect(await idem.run(`k-${randomUUID()}`, () => 'back')).toBe('back');
          // the server gave up on (or finished) every statement it was waiting on
          expect(await until(async () => (await lockWaiters(app)) === 0, 3000)).toBe(true);
        } finally {
          await holder.query('ROLLBACK').catch(() => {});
          holder.release();
          await end();
        }
      });

      it('backends terminated mid-use: in-flight calls fail fast with StoreUnavailableError, then full recovery', async () => {
        const app = `idem-term-${randomUUID().slice(0, 8)}`;
        const { store, end } = make(app);
        const holder = await admin.connect();
        try {
          // one call is in flight for sure: blocked on a row lock when its backend dies
          const r = req();
          await store.claim(r);
          await holder.query('BEGIN');
          await holder.query(`SELECT 1 FROM ${table} WHERE id = $1 FOR UPDATE`, [r.id]);
          const inFlight = timed(() => store.complete(r.id, r.token, 'x', DAY));
          await until(async () => (await lockWaiters(app)) === 1, 2000);

          // and a stream of calls keeps running across repeated terminations
          let stop = false;
          const outcomes: { ms: number; error: unknown }[] = [];
          const lane = async () => {
            while (!stop) {
              const k = req();
              outcomes.push(await timed(() => store.claim(k)));
              outcomes.push(await timed(() => store.complete(k.id, k.token, 'v', DAY)));
            }
          };
          const lanes = Promise.all([lane(), lane(), lane()]);
          await sleep(150);
          const killed = (await terminate(app)).rows[0].n;
          expect(killed).toBeGreaterThanOrEqual(1);
          const { ms, error } = await inFlight;
          expect(error).toBeInstanceOf(StoreUnavailableError);
          expect(ms).toBeLessThan(TIMEOUT);
          for (let i = 0; i < 3; i++) {
            await sleep(100);
            await terminate(app);
          }
          await sleep(200);
          stop = true;
          await lanes;
          await holder.query('ROLLBACK');

          for (const o of outcomes) {
            if (o.error) expect(o.error).toBeInstanceOf(StoreUnavailableError);
            expect(o.ms).toBeLessThan(TIMEOUT + 400);
          }
          // recovery: the same store, no restart, every call succeeds again
          for (let i = 0; i < 20; i++) {
            const k = req();
            expect((await store.claim(k)).status).toBe('acquired');
            expect(await store.complete(k.id, k.token, 'after', DAY)).toBe(true);
          }
        } finally {
          await holder.query('ROLLBACK').catch(() => {});
          holder.release();
          await end();
        }
      });

      it('the LISTEN connection terminated: waiters are woken, and it reconnects and hears NOTIFY again', async () => {
        const app = `idem-listen-${randomUUID().slice(0, 8)}`;
        const { store, end } = make(app);
        const holder = postgresStore({ connectionString: PG_URL, schema });
        try {
          const r = req();
          await holder.claim(r);
          await store.claim({ ...r, token: randomUUID() }); // marks the row awaited
          let woken = 0;
          store.subscribe(r.id, () => woken++);
          const listening = async () =>
            Number(
              (
                await admin.query(
                  `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`,
                  [app],
                )
              ).rows[0].n,
            );
          expect(await until(async () => (await listening()) === 1, 3000)).toBe(true);
          await sleep(50);
          woken = 0;
          await terminate(app);
          expect(await until(() => woken > 0, 3000)).toBe(true); // woken on reconnect
          expect(await until(async () => (await listening()) === 1, 3000)).toBe(true);
          await sleep(50);
          woken = 0;
          await holder.complete(r.id, r.token, 'done', DAY);
          expect(await until(() => woken > 0, 2000)).toBe(true);
        } finally {
          await holder.close();
          await end();
        }
      });
    });
  }

  it('a server that accepts connections and never answers: StoreUnavailableError in time, then recovery', async () => {
    const proxy = await startProxy(PG_URL);
    // the docs ask for connectionTimeoutMillis on your pool: a connect pg-pool started can only end by it
    const pool = new pg.Pool({ connectionString: proxy.url, max: 2, connectionTimeoutMillis: TIMEOUT });
    pool.on('error', () => {});
    const store = postgresStore({ pool, schema, statementTimeout: TIMEOUT });
    const own = postgresStore({ connectionString: proxy.url, schema, statementTimeout: TIMEOUT });
    try {
      await store.get('warm-up');
      await own.get('warm-up');
      proxy.blackhole = true;
      const results = await Promise.all([
        timed(() => store.claim(req())),
        timed(() => store.get('x')),
        timed(() => store.get('y')), // waits for a pool slot
        timed(() => store.get('z')),
        timed(() => own.claim(req())),
        timed(() => own.get('x')),
      ]);
      for (const { ms, error } of results) {
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect(ms).toBeLessThan(TIMEOUT + 400);
      }
      // new connections while the server hangs: also bounded
      const again = await timed(() => store.get('w'));
      expect(again.error).toBeInstanceOf(StoreUnavailableError);
      expect(again.ms).toBeLessThan(TIMEOUT + 400);

      proxy.blackhole = false;
      await sleep(TIMEOUT); // connects started during the outage run into their timeout
      for (const s of [store, own]) {
        const k = req();
        expect((await s.claim(k)).status).toBe('acquired');
        expect(await s.complete(k.id, k.token, 'back', DAY)).toBe(true);
      }
    } finally {
      await store.close();
      await own.close();
      await pool.end();
      await proxy.close();
    }
  });

  it('a closed port: StoreUnavailableError at once, with the pg error as cause', async () => {
    const store = postgresStore({ connectionString: 'postgres://postgres@127.0.0.1:1/postgres', schema });
    try {
      const { ms, error } = await timed(() => store.claim(req()));
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect((error as Error).message).toMatch(/ECONNREFUSED/);
      expect((error as Error).cause).toBeInstanceOf(Error);
      expect(ms).toBeLessThan(1000);
    } finally {
      await store.close();
    }
  });
});

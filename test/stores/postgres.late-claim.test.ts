/**
 * A claim stuck behind a lock times out for the caller (503), and lands once the lock is
 * gone (the pool is the user's, without a server-side statement_timeout). The engine
 * releases the token it sent, so the key is free again: the next call is attempt 1.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createIdem } from '../../src/core/engine.ts';
import { StoreUnavailableError } from '../../src/core/errors.ts';
import { postgresStore } from '../../src/stores/postgres/index.ts';
import { serviceAvailable, uniqueName } from '../helpers/services.ts';
import { adminPool, dropSchema, PG_URL, until } from './fixtures/postgres-suite.ts';

const up = await serviceAvailable('postgres');
const TIMEOUT = 400;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!up)('postgres: a claim that lands after its timeout', () => {
  const schema = uniqueName('idem_pg_late');
  const admin = up ? adminPool() : (undefined as never);
  const pool = up ? new pg.Pool({ connectionString: PG_URL, max: 4 }) : (undefined as never);
  afterAll(async () => {
    await pool?.end();
    await dropSchema(admin, schema);
    await admin?.end();
  });

  it('is released once the store answers again: nothing ran, the next call is attempt 1', async () => {
    const store = postgresStore({ pool, schema, statementTimeout: TIMEOUT, listen: false });
    await store.ready();
    const events: string[] = [];
    const idem = createIdem({ store, lease: '30s', onEvent: (e) => events.push(e.type) });
    const { recordId } = idem.ids('pay');
    const blocker = await admin.connect();
    let runs = 0;
    try {
      // another transaction holds the row's unique key: the claim waits behind it
      await blocker.query('BEGIN');
      await blocker.query(
        `INSERT INTO "${schema}".idem_records (id, state, fingerprint, token, attempt, lease_until, expires_at)
         VALUES ($1, 'in_progress', '', 'blocker', 1, 0, 0)`,
        [recordId],
      );
      const err = await idem.run('pay', () => ++runs).catch((e) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      await sleep(100);
    } finally {
      await blocker.query('ROLLBACK'); // the waiting claim goes through now
      blocker.release();
    }
    const row = () =>
      admin
        .query(`SELECT token, attempt FROM "${schema}".idem_records WHERE id = $1`, [recordId])
        .then((r) => r.rows);
    // the late claim landed and was released by the engine (not merely not landed yet), into
    // the released marker of the guard window: nobody holds it
    expect(await until(() => events.includes('released'), 8_000)).toBe(true);
    expect(await row()).toEqual([{ token: '', attempt: 0 }]);
    const r = await idem.execute('pay', (ctx) => ({ attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun }));
    expect(r).toMatchObject({ replayed: false, value: { attempt: 1, mayHaveRun: false } });
    expect(runs).toBe(0);
    await idem.close();
  });
});

import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidOptionError, StoreUnavailableError } from '../../src/core/errors.ts';
import type { ClaimRequest } from '../../src/core/store.ts';
import { type PostgresStore, postgresStore } from '../../src/stores/postgres/index.ts';
import { SCHEMA_VERSION } from '../../src/stores/postgres/schema.ts';
import { serviceAvailable, uniqueName } from '../helpers/services.ts';
import { startProxy } from './fixtures/postgres-proxy.ts';
import { adminPool, dropSchema, PG_URL, until } from './fixtures/postgres-suite.ts';

const up = await serviceAvailable('postgres');
const DAY = 86_400_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const req = (over: Partial<ClaimRequest> = {}): ClaimRequest => ({
  id: `k-${randomUUID()}`,
  fingerprint: 'fp',
  leaseMs: 30_000,
  ttlMs: DAY,
  token: randomUUID(),
  ...over,
});

describe('postgresStore options', () => {
  const pool = { connect: async () => Promise.reject(new Error('unused')), end: async () => {} };
  it.each([
    [{}, /exactly one of/],
    [{ pool, connectionString: 'postgres://x' }, /exactly one of/],
    [{ pool, schema: 'Idem' }, /schema must be/],
    [{ pool, schema: 'idem; drop table x' }, /schema must be/],
    [{ pool, table: '1records' }, /table must be/],
    [{ pool, table: 'x'.repeat(49) }, /table must be/],
    [{ pool, statementTimeout: 0 }, /statementTimeout/],
    [{ pool, statementTimeout: 1.5 }, /statementTimeout/],
    [{ pool, max: 0 }, /max must be/],
    [{ pool, preparedStatements: 'no' as unknown as boolean }, /preparedStatements must be true or false/],
  ])('rejects %j with InvalidOptionError', (options, message) => {
    expect(() => postgresStore(options)).toThrow(InvalidOptionError);
    expect(() => postgresStore(options)).toThrow(message);
  });
});

describe.skipIf(!up)('postgres store', () => {
  const schema = uniqueName('idem_pg');
  const admin = up ? adminPool() : (undefined as never);
  const pool = new pg.Pool({ connectionString: PG_URL, max: 5 });
  pool.on('error', () => {});
  let store: PostgresStore;
  const row = async (id: string) =>
    (await admin.query(`SELECT * FROM "${schema}".idem_records WHERE id = $1`, [id])).rows[0];
  const dbNow = async () =>
    Number(
      (await admin.query('SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS t')).rows[0].t,
    );

  beforeAll(async () => {
    store = postgresStore({ pool, schema });
    await store.ready();
  });
  afterAll(async () => {
    await store.close();
    await pool.end();
    await dropSchema(admin, schema);
    await admin.end();
  });

  describe('schema', () => {
    it('creates the table, its index, the claim function and version row; TEXT outcome, bigint ms times', async () => {
      const cols = await admin.query(
        `SELECT column_name, data_type FROM information_schema.columns
         WHERE table_schema = $1 AND table_name = 'idem_records' ORDER BY ordinal_position`,
        [schema],
      );
      expect(Object.fromEntries(cols.rows.map((r) => [r.column_name, r.data_type]))).toEqual({
        id: 'text',
        state: 'text',
        fingerprint: 'text',
        token: 'text',
        attempt: 'integer',
        lease_until: 'bigint',
        expires_at: 'bigint',
        outcome: 'text',
        outcome_escaped: 'boolean',
        awaited: 'boolean',
        created_at: 'bigint',
        completed_at: 'bigint',
        scope: 'text',
      });
      const versions = await admin.query(
        `SELECT version FROM "${schema}".idem_records_version ORDER BY version`,
      );
      expect(versions.rows).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
      expect(SCHEMA_VERSION).toBe(3);
      // the claim, and its five-parameter overload for processes of the previous idem
      const fns = await admin.query(
        `SELECT pg_get_function_identity_arguments(p.oid) AS args FROM pg_proc p
         JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = 'idem_records_claim'
         ORDER BY p.pronargs`,
        [schema],
      );
      expect(fns.rows.map((r) => r.args)).toEqual([
        'p_id text, p_fingerprint text, p_token text, p_lease_ms bigint, p_ttl_ms bigint',
        'p_id text, p_fingerprint text, p_token text, p_lease_ms bigint, p_ttl_ms bigint, p_scope text',
      ]);
      const idx = await admin.query(`SELECT indexname FROM pg_indexes WHERE schemaname = $1`, [schema]);
      expect(idx.rows.map((r) => r.indexname).sort()).toEqual([
        'idem_records_expires_at',
        'idem_records_pkey',
        'idem_records_version_pkey',
      ]);
    });

    it('12 stores starting at once on a new schema: one migration, all ready', async () => {
      const fresh = uniqueName('idem_pg_mig');
      const stores = Array.from({ length: 12 }, () =>
        postgresStore({ connectionString: PG_URL, schema: fresh }),
      );
      try {
        await Promise.all(stores.map((s) => s.ready()));
        const results = await Promise.all(stores.map((s) => s.claim(req({ id: 'same' }))));
        expect(results.filter((r) => r.status === 'acquired')).toHaveLength(1);
        const versions = await admin.query(
          `SELECT max(version) AS v, count(*)::int AS n FROM "${fresh}".idem_records_version`,
        );
        expect(versions.rows).toEqual([{ v: SCHEMA_VERSION, n: SCHEMA_VERSION }]);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
        await dropSchema(admin, fresh);
      }
    });

    it('once the schema exists, a role with only DML and EXECUTE rights runs every operation', async () => {
      const role = uniqueName('idem_role');
      await admin.query(`CREATE ROLE ${role} LOGIN`);
      await admin.query(`GRANT USAGE ON SCHEMA "${schema}" TO ${role}`);
      await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON "${schema}".idem_records TO ${role}`);
      await admin.query(`GRANT SELECT ON "${schema}".idem_records_version TO ${role}`);
      await admin.query(
        `GRANT EXECUTE ON FUNCTION "${schema}".idem_records_claim(text, text, text, bigint, bigint, text) TO ${role}`,
      );
      const url = new URL(PG_URL);
      url.username = role;
      const s = postgresStore({ connectionString: url.toString(), schema });
      try {
        const r = req();
        expect((await s.claim(r)).status).toBe('acquired');
        expect(await s.renew(r.id, r.token, 1000)).toBeGreaterThan(0);
        expect(await s.complete(r.id, r.token, 'ok', DAY)).toBe(true);
        expect((await s.claim({ ...r, token: 'x' })).status).toBe('existing');
        expect((await s.get(r.id))?.outcome).toBe('ok');
        expect(await s.purgeExpired(10)).toBeGreaterThanOrEqual(0);
        await expect(admin.query(`SET ROLE ${role}; CREATE TABLE "${schema}".nope (x int)`)).rejects.toThrow(
          /permission denied/,
        );
      } finally {
        await s.close();
        await admin.query('RESET ROLE');
        await admin.query(`DROP OWNED BY ${role}`);
        await admin.query(`DROP ROLE ${role}`);
      }
    });

    it('upgrades a version 1 schema: the claim function is replaced, records stay', async () => {
      const fresh = uniqueName('idem_pg_v1');
      const s1 = postgresStore({ connectionString: PG_URL, schema: fresh });
      const kept = req();
      await s1.claim(kept);
      await s1.complete(kept.id, kept.token, 'kept', DAY);
      await s1.close();
      // back to version 1, with a claim function that is not this version's
      await admin.query(`DELETE FROM "${fresh}".idem_records_version WHERE version >= 2`);
      await admin.query(
        `DROP FUNCTION "${fresh}".idem_records_claim(text, text, text, bigint, bigint, text) CASCADE`,
      );
      await admin.query(`ALTER TABLE "${fresh}".idem_records
        DROP COLUMN created_at, DROP COLUMN completed_at, DROP COLUMN scope`);
      await admin.query(`CREATE OR REPLACE FUNCTION "${fresh}".idem_records_claim(
          p_id text, p_fingerprint text, p_token text, p_lease_ms bigint, p_ttl_ms bigint)
        RETURNS TABLE (acquired boolean, state text, fingerprint text, token text, attempt integer,
          lease_until bigint, expires_at bigint, outcome text, outcome_escaped boolean, now_ms bigint)
        LANGUAGE plpgsql AS $fn$ BEGIN RAISE EXCEPTION 'the version 1 function ran'; END $fn$`);
      const s2 = postgresStore({ connectionString: PG_URL, schema: fresh });
      try {
        const r = req({ leaseMs: 5_000, ttlMs: 1_000 });
        expect(await s2.claim(r)).toMatchObject({ status: 'acquired', attempt: 1 });
        const stored = (await admin.query(`SELECT * FROM "${fresh}".idem_records WHERE id = $1`, [r.id]))
          .rows[0];
        expect(Number(stored.expires_at) - Number(stored.lease_until)).toBe(5_000);
        expect((await s2.get(kept.id))?.outcome).toBe('kept');
        const versions = await admin.query(
          `SELECT version FROM "${fresh}".idem_records_version ORDER BY version`,
        );
        expect(versions.rows).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);
      } finally {
        await s2.close();
        await dropSchema(admin, fresh);
      }
    });

    it('upgrades a version 2 schema in place: old rows list with createdAt 0, new claims fill the new columns, the old claim still works', async () => {
      const old = uniqueName('idem_pg_v2');
      await createVersion2Schema(old);
      const t = `"${old}".idem_records`;
      // a record of the previous idem, and a process of it that keeps running through the upgrade
      await admin.query(
        `INSERT INTO ${t} (id, state, fingerprint, token, attempt, lease_until, expires_at, outcome)
         VALUES ('old-done', 'completed', 'fp-old', 'tok-old', 1, 0, $1, 'old outcome')`,
        [(await dbNow()) + DAY],
      );
      const oldProcess = new pg.Client({ connectionString: PG_URL });
      await oldProcess.connect();
      const oldClaim = (id: string) =>
        oldProcess.query({
          name: 'old_claim',
          text: `SELECT * FROM "${old}".idem_records_claim($1, $2, $3, $4, $5)`,
          values: [id, 'fp', randomUUID(), 30_000, DAY],
        });
      expect((await oldClaim('by-old-before')).rows[0]).toMatchObject({ acquired: true, attempt: 1 });

      const stores = Array.from({ length: 4 }, () =>
        postgresStore({ connectionString: PG_URL, schema: old }),
      );
      try {
        await Promise.all(stores.map((s) => s.ready())); // four processes upgrade at once: one migrates
        const s = stores[0]!;
        const versions = await admin.query(
          `SELECT version FROM "${old}".idem_records_version ORDER BY version`,
        );
        expect(versions.rows).toEqual([{ version: 1 }, { version: 2 }, { version: 3 }]);

        // the old rows: readable, replayable, listed with createdAt 0 and no scope
        expect(await s.get('old-done')).toMatchObject({ state: 'completed', outcome: 'old outcome' });
        const replay = await s.claim({
          ...req({ id: 'old-done', fingerprint: 'fp-old' }),
          scopeHash: 'c2NvcGU',
        });
        expect(replay).toMatchObject({
          status: 'existing',
          record: { outcome: 'old outcome', token: 'tok-old' },
        });
        expect(await s.inspect!.get('old-done')).toEqual({
          id: 'old-done',
          state: 'completed',
          attempt: 1,
          leaseUntil: 0,
          expiresAt: expect.any(Number),
          fingerprint: 'fp-old',
          outcomeBytes: 11,
          createdAt: 0,
          completedAt: 0,
          scopeHash: '',
        });
        const listed = (await s.inspect!.list({ limit: 100 })).records;
        expect(listed.find((r) => r.id === 'by-old-before')).toMatchObject({ createdAt: 0, scopeHash: '' });

        // new claims fill created_at, scope and, on complete, completed_at
        const before = await dbNow();
        const r = req({ scopeHash: 'c2NvcGUtYQ' });
        expect(await s.claim(r)).toMatchObject({ status: 'acquired', attempt: 1 });
        expect(await s.complete(r.id, r.token, 'new', DAY)).toBe(true);
        const got = (await s.inspect!.get(r.id))!;
        expect(got).toMatchObject({ state: 'completed', scopeHash: 'c2NvcGUtYQ', outcomeBytes: 3 });
        expect(got.createdAt).toBeGreaterThanOrEqual(before);
        expect(got.completedAt).toBeGreaterThanOrEqual(got.createdAt);
        expect(got.completedAt).toBeLessThanOrEqual(await dbNow());
        expect((await admin.query(`SELECT scope FROM ${t} WHERE id = $1`, [r.id])).rows[0].scope).toBe(
          'c2NvcGUtYQ',
        );

        // the old process's prepared five-parameter claim keeps working, with the current semantics
        const after = await oldClaim('by-old-after');
        expect(after.rows[0]).toMatchObject({ acquired: true, attempt: 1 });
        expect(await s.inspect!.get('by-old-after')).toMatchObject({ state: 'in_progress', scopeHash: '' });
        expect((await s.inspect!.get('by-old-after'))!.createdAt).toBeGreaterThanOrEqual(before);
        expect((await oldClaim('old-done')).rows[0]).toMatchObject({
          acquired: false,
          outcome: 'old outcome',
        });
      } finally {
        await oldProcess.end();
        await Promise.all(stores.map((s) => s.close()));
        await dropSchema(admin, old);
      }
    });

    it('refuses a schema written by a newer idem, with StoreUnavailableError', async () => {
      const fresh = uniqueName('idem_pg_new');
      const s1 = postgresStore({ connectionString: PG_URL, schema: fresh });
      await s1.ready();
      await s1.close();
      await admin.query(`INSERT INTO "${fresh}".idem_records_version (version) VALUES ($1)`, [
        SCHEMA_VERSION + 1,
      ]);
      const s2 = postgresStore({ connectionString: PG_URL, schema: fresh });
      try {
        await expect(s2.get('x')).rejects.toThrow(StoreUnavailableError);
        await expect(s2.get('x')).rejects.toThrow(/newer than this idem/);
      } finally {
        await s2.close();
        await dropSchema(admin, fresh);
      }
    });

    it('a second table in the same schema gets its own records, version table and channel', async () => {
      const other = postgresStore({ pool, schema, table: 'other_records' });
      const r = req();
      expect((await other.claim(r)).status).toBe('acquired');
      expect(await store.get(r.id)).toBeUndefined();
      expect((await other.get(r.id))?.token).toBe(r.token);
      await other.close();
    });
  });

  describe('transitions', () => {
    it('claim on an absent key: attempt 1, lease and retention from the database clock', async () => {
      const before = await dbNow();
      const r = req({ leaseMs: 10_000, ttlMs: 60_000 });
      const c = await store.claim(r);
      const after = await dbNow();
      expect(c).toMatchObject({ status: 'acquired', attempt: 1, takeover: false });
      if (c.status !== 'acquired') return;
      expect(c.leaseUntil).toBeGreaterThanOrEqual(before + 10_000);
      expect(c.leaseUntil).toBeLessThanOrEqual(after + 10_000);
      const stored = await row(r.id);
      expect(stored).toMatchObject({ state: 'in_progress', token: r.token, attempt: 1, outcome: null });
      expect(Number(stored.expires_at) - Number(stored.lease_until)).toBe(60_000);
    });

    it('retention while in progress runs max(lease, ttl) past the lease end, also when ttl <= lease', async () => {
      const r = req({ leaseMs: 5_000, ttlMs: 1_000 });
      const c = await store.claim(r);
      const stored = await row(r.id);
      expect(c.status === 'acquired' && c.leaseUntil).toBe(Number(stored.lease_until));
      expect(Number(stored.expires_at) - Number(stored.lease_until)).toBe(5_000);
    });

    it('an existing record comes back with the database time, and the claim writes nothing', async () => {
      const r = req();
      await store.claim(r);
      await store.complete(r.id, r.token, 'done', DAY);
      const xmin = (await admin.query(`SELECT xmin FROM "${schema}".idem_records WHERE id = $1`, [r.id]))
        .rows[0];
      const c = await store.claim({ ...r, token: randomUUID() });
      expect(c.status).toBe('existing');
      if (c.status !== 'existing') return;
      expect(c.record).toEqual({
        id: r.id,
        state: 'completed',
        fingerprint: 'fp',
        token: r.token,
        attempt: 1,
        leaseUntil: 0,
        expiresAt: expect.any(Number),
        outcome: 'done',
      });
      expect(Math.abs(c.now - (await dbNow()))).toBeLessThan(1000);
      const after = (await admin.query(`SELECT xmin FROM "${schema}".idem_records WHERE id = $1`, [r.id]))
        .rows[0];
      expect(after).toEqual(xmin); // a replay is a pure read: no new row version
    });

    it('takeover: attempt + 1, takeover true; a replaced expired record starts again at attempt 1', async () => {
      const r = req({ leaseMs: 200, ttlMs: 600 });
      await store.claim(r);
      await sleep(250);
      const t2 = randomUUID();
      expect(await store.claim({ ...r, token: t2 })).toMatchObject({ attempt: 2, takeover: true });
      expect(await store.complete(r.id, r.token, 'zombie', DAY)).toBe(false);
      await sleep(250);
      expect(await store.claim({ ...r, token: randomUUID() })).toMatchObject({ attempt: 3, takeover: true });
      await sleep(1000); // past retention (lease end + 600 ms): the record is expired, not taken over
      expect(await store.get(r.id)).toBeUndefined();
      expect(await store.claim({ ...r, fingerprint: 'other', token: randomUUID() })).toMatchObject({
        status: 'acquired',
        attempt: 1,
        takeover: false,
      });
      expect(await row(r.id)).toMatchObject({ fingerprint: 'other', attempt: 1, awaited: false });
    });

    it('complete: fenced, idempotent for the holder, first outcome kept, retention from now', async () => {
      const r = req();
      await store.claim(r);
      expect(await store.complete(r.id, randomUUID(), 'zombie', DAY)).toBe(false);
      const before = await dbNow();
      expect(await store.complete(r.id, r.token, 'first', 60_000)).toBe(true);
      const stored = await row(r.id);
      expect(stored).toMatchObject({ state: 'completed', outcome: 'first', lease_until: '0' });
      expect(Number(stored.expires_at)).toBeGreaterThanOrEqual(before + 60_000);
      expect(await store.complete(r.id, r.token, 'second', DAY)).toBe(true);
      expect(await row(r.id)).toMatchObject({ outcome: 'first', expires_at: stored.expires_at });
      expect(await store.complete('absent', r.token, 'x', DAY)).toBe(false);
    });

    it('release: fenced, deletes the row of attempt 1, never a completed one', async () => {
      const r = req();
      await store.claim(r);
      expect(await store.release(r.id, randomUUID())).toBe(false);
      expect(await store.release(r.id, r.token)).toBe(true);
      expect(await row(r.id)).toBeUndefined();
      expect(await store.release(r.id, r.token)).toBe(false);
      const done = req();
      await store.claim(done);
      await store.complete(done.id, done.token, 'x', DAY);
      expect(await store.release(done.id, done.token)).toBe(false);
    });

    it('release after a takeover keeps the row: no token, lease ended now, retention unchanged', async () => {
      const r = req({ leaseMs: 100 });
      await store.claim(r);
      await sleep(150);
      const t2 = randomUUID();
      expect(await store.claim({ ...r, token: t2 })).toMatchObject({ attempt: 2, takeover: true });
      const before = await row(r.id);
      const at = await dbNow();
      expect(await store.release(r.id, t2)).toBe(true);
      const after = await row(r.id);
      expect(after).toMatchObject({
        state: 'in_progress',
        token: '',
        attempt: 2,
        expires_at: before.expires_at,
      });
      expect(Number(after.lease_until)).toBeGreaterThanOrEqual(at);
      expect(Number(after.lease_until)).toBeLessThanOrEqual(await dbNow());
      expect(await store.release(r.id, t2)).toBe(false);
    });

    it('renew: now + lease on the database clock, fenced, retention moves with the lease', async () => {
      const r = req({ leaseMs: 1_000, ttlMs: DAY });
      await store.claim(r);
      expect(await store.renew(r.id, randomUUID(), 5_000)).toBeUndefined();
      const before = await dbNow();
      const until = await store.renew(r.id, r.token, 5_000);
      expect(until).toBeGreaterThanOrEqual(before + 5_000);
      expect(until).toBeLessThan(before + 6_000);
      expect(Number((await row(r.id)).expires_at)).toBe(until! + DAY);
      const short = req({ leaseMs: 100, ttlMs: 100 });
      await store.claim(short);
      const u2 = await store.renew(short.id, short.token, 60_000);
      expect(Number((await row(short.id)).expires_at)).toBe(u2! + 100);
    });

    it('get: undefined when absent or expired', async () => {
      expect(await store.get('never-claimed')).toBeUndefined();
      const r = req({ leaseMs: 100, ttlMs: 100 });
      await store.claim(r);
      expect((await store.get(r.id))?.state).toBe('in_progress');
      await sleep(250); // lease end + max(lease, ttl)
      expect(await store.get(r.id)).toBeUndefined();
      expect(await row(r.id)).toBeDefined(); // still there until purged
    });
  });

  describe('outcomes', () => {
    it('strings TEXT cannot hold (NUL, unpaired surrogates) round-trip exactly', async () => {
      for (const outcome of ['a\u0000b', '\ud800', 'x\udc00y', '\u0000', 'plain "json" {}']) {
        const r = req();
        await store.claim(r);
        await store.complete(r.id, r.token, outcome, DAY);
        expect((await store.get(r.id))?.outcome).toBe(outcome);
        const c = await store.claim({ ...r, token: randomUUID() });
        expect(c.status === 'existing' && c.record.outcome).toBe(outcome);
      }
    });

    it('a 32 MiB outcome is stored untruncated', async () => {
      const r = req();
      const outcome = `${'é'.repeat(16 * 1024 * 1024)}🚀`;
      await store.claim(r);
      expect(await store.complete(r.id, r.token, outcome, DAY)).toBe(true);
      const got = (await store.get(r.id))?.outcome;
      expect(got?.length).toBe(outcome.length);
      expect(got === outcome).toBe(true);
    });
  });

  describe('purgeExpired', () => {
    it('deletes only expired rows, in bounded batches, answering the count', async () => {
      const ids = Array.from({ length: 2500 }, (_, i) => `purge-${schema}-${i}`);
      await admin.query(
        `INSERT INTO "${schema}".idem_records (id, state, fingerprint, token, attempt, lease_until, expires_at, outcome)
         SELECT unnest($1::text[]), 'completed', '', 't', 1, 0, 1, 'x'`,
        [ids],
      );
      const live = req();
      await store.claim(live);
      expect(await store.purgeExpired(0)).toBe(0);
      expect(await store.purgeExpired(1200)).toBe(1200);
      expect(await store.purgeExpired(5000)).toBeGreaterThanOrEqual(1300);
      expect(await store.purgeExpired(10)).toBe(0);
      expect(await row(live.id)).toBeDefined();
      await expect(store.purgeExpired(-1)).rejects.toThrow(InvalidOptionError);
    });

    it('skips rows another transaction holds instead of waiting for them', async () => {
      const ids = ['locked-a', 'locked-b', 'free-c'].map((x) => `${x}-${randomUUID()}`);
      await admin.query(
        `INSERT INTO "${schema}".idem_records (id, state, fingerprint, token, attempt, lease_until, expires_at)
         SELECT unnest($1::text[]), 'completed', '', 't', 1, 0, 1`,
        [ids],
      );
      const holder = await admin.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(`SELECT 1 FROM "${schema}".idem_records WHERE id = ANY($1) FOR UPDATE`, [
          ids.slice(0, 2),
        ]);
        const started = Date.now();
        expect(await store.purgeExpired(100)).toBe(1);
        expect(Date.now() - started).toBeLessThan(1000);
        await holder.query('ROLLBACK');
        expect(await store.purgeExpired(100)).toBe(2);
      } finally {
        holder.release();
      }
    });
  });

  describe('round trips', () => {
    it('every operation is one statement in one round trip, and the claim sends no app time', async () => {
      const proxy = await startProxy(PG_URL);
      const proxied = new pg.Pool({ connectionString: proxy.url, max: 1 });
      const s = postgresStore({ pool: proxied, schema });
      try {
        await s.ready();
        await s.get('warm-up'); // the pool's one connection is open and idle now
        const r = req({ leaseMs: 150 });
        const measure = async (op: () => Promise<unknown>) => {
          proxy.reset();
          await op();
          return proxy.roundTrips();
        };
        const parsed: Record<string, string[]> = {};
        const ops: [string, () => Promise<unknown>][] = [
          ['claim (acquire)', () => s.claim(r)],
          ['claim (existing, marks awaited)', () => s.claim({ ...r, token: 'other' })],
          ['claim (existing)', () => s.claim({ ...r, token: 'other' })],
          ['renew', () => s.renew(r.id, r.token, 150)],
          ['claim (takeover)', () => sleep(200).then(() => s.claim({ ...r, token: 't2' }))],
          ['complete', () => s.complete(r.id, 't2', 'out', DAY)],
          ['claim (replay)', () => s.claim({ ...r, token: 't3' })],
          ['get', () => s.get(r.id)],
          ['inspect.get', () => s.inspect!.get(r.id)],
          ['release', () => s.release(r.id, 't2')],
          ['purgeExpired', () => s.purgeExpired(10)],
        ];
        for (const [name, op] of ops) {
          const trips = await measure(op);
          parsed[name] = trips.messages.filter((m) => m.startsWith('parse:'));
          expect({ name, count: trips.count, connections: trips.connections }).toEqual({
            name,
            count: 1,
            connections: 0,
          });
        }
        // the claim's text carries no app time; prepared once per connection, later claims only execute
        expect(parsed['claim (acquire)']).toEqual([
          expect.stringMatching(/_claim"\(\$1, \$2, \$3, \$4, \$5, \$6/),
        ]);
        expect(parsed['claim (replay)']).toEqual([]);
        expect(parsed.get).toEqual([]);
        // preparedStatements: false (a pooler without per-client statements) parses every time
        const unprepared = postgresStore({ pool: proxied, schema, preparedStatements: false });
        await unprepared.get(r.id);
        proxy.reset();
        await unprepared.get(r.id);
        expect(proxy.roundTrips().messages.filter((m) => m.startsWith('parse:'))).toHaveLength(1);
        await unprepared.close();
      } finally {
        await s.close();
        await proxied.end();
        await proxy.close();
      }
    });
  });

  describe('subscribe (LISTEN/NOTIFY)', () => {
    it('a waiter that found the holder is woken by NOTIFY on complete and on release', async () => {
      const waiter = postgresStore({ pool, schema });
      try {
        for (const end of ['complete', 'release'] as const) {
          const r = req();
          await store.claim(r);
          expect((await waiter.claim({ ...r, token: randomUUID() })).status).toBe('existing');
          expect((await row(r.id)).awaited).toBe(true);
          let woken = 0;
          const off = waiter.subscribe(r.id, () => woken++);
          await sleep(300); // LISTEN is on
          woken = 0;
          const at = Date.now();
          if (end === 'complete') await store.complete(r.id, r.token, 'x', DAY);
          else await store.release(r.id, r.token);
          expect(await until(() => woken > 0, 2000)).toBe(true);
          expect(Date.now() - at).toBeLessThan(500);
          off();
        }
      } finally {
        await waiter.close();
      }
    });

    it('records nobody waits on never NOTIFY (NOTIFY serializes commits cluster-wide)', async () => {
      const listener = await admin.connect();
      const heard: string[] = [];
      const channel = `idem_${(await import('node:crypto')).createHash('sha256').update(`${schema}.idem_records`).digest('hex').slice(0, 24)}`;
      listener.on('notification', (m) => heard.push(m.payload ?? ''));
      try {
        await listener.query(`LISTEN "${channel}"`);
        const quiet = req();
        await store.claim(quiet);
        await store.complete(quiet.id, quiet.token, 'x', DAY);
        const awaited = req();
        await store.claim(awaited);
        await store.claim({ ...awaited, token: randomUUID() });
        await store.complete(awaited.id, awaited.token, 'x', DAY);
        expect(await until(() => heard.length > 0, 2000)).toBe(true);
        await sleep(100);
        expect(heard).toEqual([awaited.id]);
      } finally {
        await listener.query('UNLISTEN *');
        listener.release();
      }
    });

    it('a notification that lands just before subscribe still wakes the subscriber', async () => {
      const waiter = postgresStore({ pool, schema });
      try {
        const warm = waiter.subscribe('warm', () => {});
        await sleep(300);
        warm();
        const r = req();
        await store.claim(r);
        await waiter.claim({ ...r, token: randomUUID() });
        await store.complete(r.id, r.token, 'x', DAY);
        await sleep(100); // the NOTIFY arrived with nobody subscribed
        let woken = false;
        waiter.subscribe(r.id, () => {
          woken = true;
        });
        expect(await until(() => woken, 200)).toBe(true);
      } finally {
        await waiter.close();
      }
    });

    it('listen: false never holds a connection and subscribe is a no-op', async () => {
      const s = postgresStore({ pool, schema, listen: false });
      const off = s.subscribe('x', () => {});
      off();
      expect(pool.totalCount - pool.idleCount).toBe(0);
      await s.close();
    });
  });

  describe('close', () => {
    it("leaves the user's pool open and ends the pool it created; later calls reject", async () => {
      const mine = postgresStore({ pool, schema });
      await mine.get('x');
      await mine.close();
      await expect(mine.get('x')).rejects.toThrow(StoreUnavailableError);
      expect((await pool.query('SELECT 1 AS one')).rows[0].one).toBe(1);

      const app = `idem-close-${randomUUID().slice(0, 8)}`;
      const own = postgresStore({ connectionString: `${PG_URL}?application_name=${app}`, schema });
      await Promise.all([own.get('x'), own.get('y')]);
      own.subscribe('x', () => {});
      const count = async () =>
        Number(
          (await admin.query('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [app]))
            .rows[0].n,
        );
      expect(await until(async () => (await count()) >= 2, 3000)).toBe(true);
      await own.close();
      expect(await until(async () => (await count()) === 0, 3000)).toBe(true);
    });
  });
});

/** The schema exactly as idem wrote it at version 2 (before created_at, completed_at and scope). */
async function createVersion2Schema(schema: string): Promise<void> {
  const admin = adminPool();
  const t = `"${schema}".idem_records`;
  const now = '(extract(epoch from clock_timestamp()) * 1000)::bigint';
  try {
    await admin.query(`CREATE SCHEMA "${schema}"`);
    await admin.query(`CREATE TABLE "${schema}".idem_records_version (
      version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    await admin.query(`CREATE TABLE ${t} (
      id text PRIMARY KEY,
      state text NOT NULL CHECK (state IN ('in_progress', 'completed')),
      fingerprint text NOT NULL,
      token text NOT NULL,
      attempt integer NOT NULL,
      lease_until bigint NOT NULL,
      expires_at bigint NOT NULL,
      outcome text,
      outcome_escaped boolean NOT NULL DEFAULT false,
      awaited boolean NOT NULL DEFAULT false)`);
    await admin.query(`CREATE INDEX "idem_records_expires_at" ON ${t} (expires_at)`);
    await admin.query(`CREATE FUNCTION "${schema}".idem_records_claim(
      p_id text, p_fingerprint text, p_token text, p_lease_ms bigint, p_ttl_ms bigint)
    RETURNS TABLE (acquired boolean, state text, fingerprint text, token text, attempt integer,
      lease_until bigint, expires_at bigint, outcome text, outcome_escaped boolean, now_ms bigint)
    LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    DECLARE
      t bigint := ${now};
      r ${t}%ROWTYPE;
    BEGIN
      FOR i IN 1..10 LOOP
        SELECT * INTO r FROM ${t} x WHERE x.id = p_id;
        IF FOUND AND r.expires_at > t
          AND (r.state = 'completed' OR r.lease_until > t OR r.fingerprint <> p_fingerprint) THEN
          IF r.state = 'in_progress' AND NOT r.awaited THEN
            UPDATE ${t} x SET awaited = true
            WHERE x.id = p_id AND x.token = r.token AND x.state = 'in_progress' AND NOT x.awaited;
            CONTINUE WHEN NOT FOUND;
            r.awaited := true;
          END IF;
          RETURN QUERY SELECT false, r.state, r.fingerprint, r.token, r.attempt, r.lease_until,
            r.expires_at, r.outcome, r.outcome_escaped, t;
          RETURN;
        END IF;
        INSERT INTO ${t} AS x (id, state, fingerprint, token, attempt, lease_until, expires_at)
        VALUES (p_id, 'in_progress', p_fingerprint, p_token, 1, t + p_lease_ms,
          t + p_lease_ms + greatest(p_lease_ms, p_ttl_ms))
        ON CONFLICT (id) DO UPDATE SET
          state = 'in_progress',
          fingerprint = excluded.fingerprint,
          token = excluded.token,
          attempt = CASE WHEN x.expires_at <= t THEN 1 ELSE x.attempt + 1 END,
          lease_until = excluded.lease_until,
          expires_at = CASE WHEN x.expires_at <= t THEN excluded.expires_at
                            ELSE greatest(x.expires_at, excluded.expires_at) END,
          outcome = NULL,
          outcome_escaped = false,
          awaited = CASE WHEN x.expires_at <= t THEN false ELSE x.awaited END
        WHERE x.expires_at <= t
           OR (x.state = 'in_progress' AND x.lease_until <= t AND x.fingerprint = excluded.fingerprint)
        RETURNING x.* INTO r;
        IF FOUND THEN
          RETURN QUERY SELECT true, r.state, r.fingerprint, r.token, r.attempt, r.lease_until,
            r.expires_at, NULL::text, false, t;
          RETURN;
        END IF;
      END LOOP;
      RAISE EXCEPTION 'idem: the claim on % kept changing under concurrent writers', p_id;
    END
    $fn$`);
    await admin.query(`INSERT INTO "${schema}".idem_records_version (version) VALUES (1), (2)`);
  } finally {
    await admin.end();
  }
}

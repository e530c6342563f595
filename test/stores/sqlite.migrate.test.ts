/**
 * A SQLite file written by an older idem (schema version 1: no created_at, completed_at, scope)
 * is upgraded in place when a store opens it, by one of several processes opening it at once,
 * with its records kept; a process still running the version 1 statements keeps working.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { InvalidOptionError } from 'idem';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION } from '../../src/stores/sqlite/sql.ts';

const CHILD = new URL('./fixtures/sqlite-open-child.ts', import.meta.url).pathname;
const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'idem-sqlite-migrate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The records table and its version row exactly as idem wrote them at schema version 1. */
function createVersion1File(path: string): DatabaseSync {
  const db = new DatabaseSync(path, { timeout: 5000 });
  db.exec('PRAGMA journal_mode = WAL');
  db.exec(`CREATE TABLE idem_records (
      id TEXT PRIMARY KEY,
      state INTEGER NOT NULL,
      fingerprint TEXT NOT NULL,
      token TEXT NOT NULL,
      attempt INTEGER NOT NULL,
      lease_until INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      outcome TEXT
    ) WITHOUT ROWID`);
  db.exec('CREATE INDEX idem_records_expires_at ON idem_records (expires_at)');
  db.exec('CREATE TABLE idem_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL)');
  db.exec("INSERT INTO idem_schema (name, version) VALUES ('idem_records', 1)");
  return db;
}

/** The version 1 claim upsert, as a process of the previous idem has it prepared. */
const V1_CLAIM = `INSERT INTO idem_records AS r (id, state, fingerprint, token, attempt, lease_until, expires_at, outcome)
  VALUES (?1, 1, ?2, ?3, 1, ?4, ?5, NULL)
  ON CONFLICT (id) DO UPDATE SET
    state = 1,
    fingerprint = excluded.fingerprint,
    token = excluded.token,
    attempt = CASE WHEN r.expires_at <= ?6 THEN 1 ELSE r.attempt + 1 END,
    lease_until = excluded.lease_until,
    expires_at = CASE WHEN r.expires_at <= ?6 THEN excluded.expires_at
                      ELSE max(r.expires_at, excluded.expires_at) END,
    outcome = NULL
  WHERE r.expires_at <= ?6
     OR (r.state = 1 AND r.fingerprint = excluded.fingerprint AND r.lease_until <= ?6)
  RETURNING attempt, token, lease_until`;

/** Opens `path` in `n` processes at the same moment; answers the errors of those that failed. */
async function openAtOnce(path: string, n: number): Promise<string[]> {
  const failures: string[] = [];
  const at = Date.now() + 5_000; // after every process has started (~2 s each on a small box)
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const c = spawn(process.execPath, ['--conditions=idem-source', CHILD, path, String(at)], {
            stdio: ['ignore', 'ignore', 'pipe'],
          });
          let err = '';
          c.stderr.on('data', (d: Buffer) => (err += d));
          c.on('close', (code) => {
            if (code !== 0)
              failures.push(err.split('\n').find((l) => l.includes('Error')) ?? err.slice(0, 200));
            resolve();
          });
        }),
    ),
  );
  return failures;
}

describe('sqlite store: a version 1 file', () => {
  it('is upgraded in place by one of 4 processes opening it at once: old rows kept, new columns filled', async () => {
    expect(SCHEMA_VERSION).toBe(2);
    const path = join(dir, 'v1.db');
    const old = createVersion1File(path);
    const t = Date.now();
    old
      .prepare(
        `INSERT INTO idem_records (id, state, fingerprint, token, attempt, lease_until, expires_at, outcome)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run('old-done', 2, 'fp-old', 'tok-old', 1, 0, t + DAY, 'old outcome');
    // a process of the previous idem, its statement prepared before the upgrade, runs through it
    const oldClaim = old.prepare(V1_CLAIM);
    expect(oldClaim.get('by-old-before', 'fp', 'tok-a', t + 30_000, t + DAY, t)).toMatchObject({
      attempt: 1,
    });

    expect(await openAtOnce(path, 4)).toEqual([]);

    const version = old.prepare("SELECT version FROM idem_schema WHERE name = 'idem_records'").get();
    expect(version).toEqual({ version: 2 });
    const columns = (
      old.prepare('PRAGMA table_info(idem_records)').all() as { name: string; dflt_value: string }[]
    )
      .slice(8)
      .map((c) => [c.name, c.dflt_value]);
    expect(columns).toEqual([
      ['created_at', '0'],
      ['completed_at', '0'],
      ['scope', "''"],
    ]);

    const store = sqliteStore({ path });
    try {
      // the old rows: readable, replayable, listed with createdAt 0 and no scope
      expect(await store.get('old-done')).toMatchObject({ state: 'completed', outcome: 'old outcome' });
      const replay = await store.claim({
        id: 'old-done',
        fingerprint: 'fp-old',
        leaseMs: 30_000,
        ttlMs: DAY,
        token: 'tok-new',
        scopeHash: 'c2NvcGU',
      });
      expect(replay).toMatchObject({
        status: 'existing',
        record: { outcome: 'old outcome', token: 'tok-old' },
      });
      expect(await store.inspect!.get('old-done')).toEqual({
        id: 'old-done',
        state: 'completed',
        attempt: 1,
        leaseUntil: 0,
        expiresAt: t + DAY,
        fingerprint: 'fp-old',
        outcomeBytes: 11,
        createdAt: 0,
        completedAt: 0,
        scopeHash: '',
      });
      const listed = (await store.inspect!.list({ limit: 100 })).records;
      expect(listed.map((r) => [r.id, r.createdAt, r.completedAt, r.scopeHash])).toEqual([
        ['by-old-before', 0, 0, ''],
        ['old-done', 0, 0, ''],
      ]);

      // new claims fill created_at and scope, complete fills completed_at
      const before = Date.now();
      const req = {
        id: 'new',
        fingerprint: 'fp',
        leaseMs: 30_000,
        ttlMs: DAY,
        token: 'tok-b',
        scopeHash: 'c2NvcGUtYQ',
      };
      expect(await store.claim(req)).toMatchObject({ status: 'acquired', attempt: 1 });
      expect(await store.complete(req.id, req.token, 'new', DAY)).toBe(true);
      const got = (await store.inspect!.get('new'))!;
      expect(got).toMatchObject({ state: 'completed', scopeHash: 'c2NvcGUtYQ', outcomeBytes: 3 });
      expect(got.createdAt).toBeGreaterThanOrEqual(before);
      expect(got.completedAt).toBeGreaterThanOrEqual(got.createdAt);
      expect(got.completedAt).toBeLessThanOrEqual(Date.now());

      // the old process's prepared claim still works on the upgraded table (the defaults fill in)
      const now = Date.now();
      expect(oldClaim.get('by-old-after', 'fp', 'tok-c', now + 30_000, now + DAY, now)).toMatchObject({
        attempt: 1,
      });
      expect(await store.inspect!.get('by-old-after')).toMatchObject({
        state: 'in_progress',
        createdAt: 0,
        scopeHash: '',
      });
    } finally {
      await store.close?.();
      old.close();
    }
  }, 60_000);

  it('a file at a newer schema version than this idem is refused with InvalidOptionError', () => {
    const path = join(dir, 'newer.db');
    const db = createVersion1File(path);
    db.exec(`UPDATE idem_schema SET version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => sqliteStore({ path })).toThrow(InvalidOptionError);
    expect(() => sqliteStore({ path })).toThrow(/schema version 3; this idem knows 2/);
  });
});

/**
 * `idem keys list`, `idem keys delete` and `idem stats` as users run them (bin/idem.js,
 * spawned) against real stores seeded by the library: SQLite, Postgres, Redis and DynamoDB
 * (dynalite). Paging visits every record once, the stuck filter finds the stalled holder, stats
 * count what is there, delete removes exactly one key and asks first.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdem } from 'idem';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { type ListRequest, listRecords, requireInspect } from '../../src/cli/inspect.ts';
import { describeKey, recordIdFor, scopeHashFor } from '../../src/cli/keys.ts';
import type { Store } from '../../src/core/store.ts';
import { memoryStore } from '../../src/stores/memory/index.ts';
import { storeFromSpec } from '../../src/stores/spec.ts';
import { createTestTable, startDynalite } from '../helpers/dynalite.ts';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';

const BIN = join(import.meta.dirname, '../../bin/idem.js');
const dir = mkdtempSync(join(tmpdir(), 'idem-inspect-'));
const AWS = { AWS_ACCESS_KEY_ID: 'idem', AWS_SECRET_ACCESS_KEY: 'idem', AWS_REGION: 'us-east-1' };
Object.assign(process.env, AWS); // the in-process seeding opens dynamodb:// specs too
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

function idem(args: string[], input?: string) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...process.env, ...AWS } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.end(input ?? '');
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
}

const pgUp = await serviceAvailable('postgres');
const redisUp = await serviceAvailable('redis');
const dynalite = await startDynalite();
cleanups.push(() => dynalite.stop());
const ddbTable = uniqueName('idem_cli');
await createTestTable(dynalite.endpoint, ddbTable);
const pgSchema = uniqueName('idem_cli');
const redisPrefix = uniqueName('idem_cli');

const stores = [
  { name: 'sqlite', up: true, spec: `sqlite:${join(dir, 'idem.db')}` },
  { name: 'postgres', up: pgUp, spec: `${SERVICES.postgres}?schema=${pgSchema}` },
  { name: 'redis', up: redisUp, spec: `${SERVICES.redis}?prefix=${redisPrefix}` },
  { name: 'dynamodb', up: true, spec: `dynamodb://${ddbTable}?endpoint=${dynalite.endpoint}` },
];
if (pgUp) {
  cleanups.push(async () => {
    const c = new pg.Client({ connectionString: SERVICES.postgres });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS "${pgSchema}" CASCADE`);
    await c.end();
  });
}
if (redisUp) {
  cleanups.push(async () => {
    const store = await storeFromSpec(`${SERVICES.redis}?prefix=${redisPrefix}`);
    for (let cursor: string | undefined, first = true; first || cursor; first = false) {
      const page = await store.inspect!.list({ limit: 1000, cursor });
      for (const r of page.records) await store.inspect!.delete(r.id);
      cursor = page.cursor;
    }
    await store.close?.();
  });
}

/** Seeds 5 completed keys (scope billing), one stalled holder and one released marker. */
async function seed(spec: string) {
  const store = await storeFromSpec(spec);
  const lib = createIdem({ store, scope: 'billing' });
  for (let i = 0; i < 5; i++) await lib.run(`order-${i}`, () => ({ order: i }));
  const stuck = uniqueName('stuck');
  await store.claim({ id: stuck, fingerprint: '', leaseMs: 1, ttlMs: 86_400_000, token: 't-stuck' });
  const marker = uniqueName('marker');
  await store.claim({ id: marker, fingerprint: 'fp', leaseMs: 30_000, ttlMs: 86_400_000, token: 't-m' });
  await store.release(marker, 't-m', 600_000);
  await new Promise((r) => setTimeout(r, 20)); // the stalled lease is now over
  return { store, stuck, marker, close: () => lib.close() };
}

/** The bytes of the five seeded outcomes as the store answers them. */
async function storedBytes(store: Store): Promise<number> {
  let n = 0;
  for (let i = 0; i < 5; i++) {
    n += Buffer.byteLength((await store.get(recordIdFor(`order-${i}`, { scope: ['billing'] })))!.outcome!);
  }
  return n;
}

for (const s of stores) {
  describe.skipIf(!s.up)(`idem keys list / delete / stats on ${s.name}`, () => {
    it('pages through every record once, filters by age, scope and lease, counts, deletes one key', {
      timeout: 180_000,
    }, async () => {
      const { store, stuck, marker, close } = await seed(s.spec);
      try {
        const seen: { id: string; state: string }[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const r = await idem([
            'keys',
            'list',
            '--store',
            s.spec,
            '--limit',
            '4',
            '--json',
            ...(cursor ? ['--cursor', cursor] : []),
          ]);
          expect(r.code, r.stderr).toBe(0);
          const page = JSON.parse(r.stdout) as { records: typeof seen; cursor: string | null };
          seen.push(...page.records);
          cursor = page.cursor;
          pages++;
        } while (cursor && pages < 50);
        // a Redis SCAN page may bring more than asked for (COUNT is a hint): paging is the conformance suite's
        if (s.name !== 'redis') expect(pages).toBeGreaterThan(1);
        expect(seen.map((r) => r.id).sort()).toEqual([...new Set(seen.map((r) => r.id))].sort());
        expect(seen).toHaveLength(7);
        expect(seen.find((r) => r.id === stuck)?.state).toBe('in_progress');
        expect(seen.find((r) => r.id === marker)?.state).toBe('released');
        expect(JSON.stringify(seen)).not.toContain('order'); // neither raw keys nor outcomes

        const ids = async (...args: string[]) => {
          const r = await idem(['keys', 'list', '--store', s.spec, '--json', ...args]);
          expect(r.code, r.stderr).toBe(0);
          return (JSON.parse(r.stdout).records as { id: string }[]).map((x) => x.id).sort();
        };
        const direct = async (req: Omit<ListRequest, 'limit'>) =>
          (await listRecords(store, { ...req, limit: 1000 })).records.map((r) => r.id).sort();
        // the command's filters through the CLI on SQLite (they are the same code on every
        // store); on every store in-process, with the store's own inspect (each CLI run is a Node start)
        if (s.name === 'sqlite') expect(await ids('--lease-ended', '10ms')).toEqual([stuck, marker].sort());
        expect(await direct({ leaseEndedMs: 10 })).toEqual([stuck, marker].sort());

        // age and scope: the five orders were written by idem.run under scope 'billing', the
        // stalled holder and the marker by store.claim with no scope
        const orders = [0, 1, 2, 3, 4].map((i) => recordIdFor(`order-${i}`, { scope: ['billing'] })).sort();
        const billing = scopeHashFor({ scope: ['billing'] });
        if (s.name === 'sqlite') {
          expect(await ids('--scope', 'billing')).toEqual(orders);
          expect(await ids('--scope-hash', '', '--newer-than', '10m')).toEqual([stuck, marker].sort());
        }
        expect(await direct({ scopeHash: billing })).toEqual(orders);
        expect(await direct({ scopeHash: '' })).toEqual([stuck, marker].sort());
        expect(await direct({ scopeHash: billing, state: 'in_progress' })).toEqual([]);
        expect(await direct({ scopeHash: scopeHashFor({ scope: ['other'] }) })).toEqual([]);
        expect(await direct({ olderThanMs: 600_000 })).toEqual([]);
        expect(await direct({ newerThanMs: 600_000 })).toHaveLength(7);
        await new Promise((r) => setTimeout(r, 1100));
        expect(await direct({ newerThanMs: 1000 })).toEqual([]);
        expect(await direct({ olderThanMs: 1000, scopeHash: billing })).toEqual(orders);
        if (s.name === 'sqlite')
          expect(await ids('--older-than', '1s', '--scope', 'billing')).toEqual(orders);
        const listed = (await listRecords(store, { limit: 1000 })).records;
        for (const r of listed) {
          expect(Math.abs(Date.now() - r.createdAt)).toBeLessThan(120_000);
          if (r.state === 'completed') expect(r.completedAt).toBeGreaterThanOrEqual(r.createdAt);
          else expect(r.completedAt).toBe(0);
        }
        const two = listed.find((r) => r.id === recordIdFor('order-2', { scope: ['billing'] }))!;
        const expected = {
          state: 'completed',
          scopeHash: billing,
          createdAt: two.createdAt,
          completedAt: two.completedAt,
        };
        expect(await describeKey(store, 'order-2', { scope: ['billing'] })).toMatchObject(expected);
        if (s.name === 'sqlite') {
          const shown = await idem([
            'keys',
            'show',
            'order-2',
            '--scope',
            'billing',
            '--store',
            s.spec,
            '--json',
          ]);
          expect(JSON.parse(shown.stdout)).toMatchObject(expected);
        }

        const stats = await idem(['stats', '--store', s.spec, '--json']);
        expect(stats.code, stats.stderr).toBe(0);
        expect(JSON.parse(stats.stdout)).toMatchObject({
          records: 7,
          byState: { completed: 5, in_progress: 1, released: 1 },
          outcomeBytes: await storedBytes(store),
          takenOver: 0,
        });
        expect(JSON.parse(stats.stdout).longestOverdueLeaseMs).toBeGreaterThan(0);

        const deleteOrder1 = (...extra: string[]) =>
          idem(['keys', 'delete', 'order-1', '--scope', 'billing', '--store', s.spec, ...extra]);
        if (s.name === 'sqlite') {
          // asking first is the command's own logic, the same on every store
          const refused = await deleteOrder1();
          expect([refused.code, refused.stderr.trim()]).toEqual([2, expect.stringContaining('add --yes')]);
        }
        const id = recordIdFor('order-1', { scope: ['billing'] });
        expect((await store.get(id))?.state).toBe('completed');
        await store.counters!.add({ buckets: [], records: [{ id, replays: 4, lastReplayAt: Date.now() }] });
        const deleted = await deleteOrder1('-y');
        expect(deleted.stdout).toContain('deleted the completed record of key "order-1"');
        expect(await store.get(id)).toBeUndefined();
        // the key is new again, and so is its replay count (it used to outlive the record)
        expect(await store.counters!.record(id)).toBeUndefined();
        expect((await store.get(recordIdFor('order-2', { scope: ['billing'] })))?.state).toBe('completed');
        if (s.name === 'sqlite') {
          const again = await deleteOrder1('--yes');
          expect([again.code, again.stdout.trim()]).toEqual([
            0,
            expect.stringContaining('nothing to delete'),
          ]);
        }
        expect(await store.inspect!.delete(id)).toBe(false); // nothing left to delete
      } finally {
        await close();
      }
    });
  });
}

describe('idem keys list / delete / stats: output and failures', () => {
  const spec = `sqlite:${join(dir, 'table.db')}`;

  it('a readable table with the next cursor; stats as lines, with the counts the store keeps', async () => {
    const { close } = await seed(spec);
    await close();
    const table = await idem(['keys', 'list', '--store', spec, '--limit', '2']);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(
      /^RECORD\s+STATE\s+ATTEMPT\s+CREATED\s+LEASE ENDS\s+EXPIRES\s+SCOPE\s+FINGERPRINT\s+OUTCOME$/,
    );
    expect(lines[1]).toMatch(/ \d+ s ago /); // created a moment ago
    expect(lines).toHaveLength(4);
    expect(lines[3]).toMatch(/^next page: --cursor \S+$/);
    const stats = await idem(['stats', '--store', spec]);
    expect(stats.stdout).toContain('records: 7 (completed 5, in progress 1, released 1)');
    expect(stats.stdout).toContain('counted over the last 35 days');
    expect(stats.stdout).toContain('  replays: 0');
    expect(stats.stdout).not.toContain('not kept in the store');
  });

  it('asks on a terminal: "n" keeps the record, "y" deletes it; progress goes to the terminal', async ({
    skip,
  }) => {
    if (spawnSync('script', ['--version']).status !== 0) return skip('script(1) is not installed: no pty');
    const run = (answer: string) =>
      spawnSync(
        'script',
        [
          '-qec',
          `${process.execPath} ${BIN} keys delete order-3 --scope billing --store ${spec}`,
          '/dev/null',
        ],
        { input: answer, encoding: 'utf8', cwd: dir, timeout: 20_000 },
      );
    const id = recordIdFor('order-3', { scope: ['billing'] });
    const no = run('n\n');
    expect(no.stdout).toContain('delete the completed record of key "order-3"');
    expect(no.stdout).toContain('not deleted');
    const store = await storeFromSpec(spec);
    expect((await store.get(id))?.state).toBe('completed');
    const yes = run('y\n');
    expect(yes.stdout).toContain('deleted the completed record');
    expect(await store.get(id)).toBeUndefined();
    await store.close?.();
    const stats = spawnSync(
      'script',
      ['-qec', `${process.execPath} ${BIN} stats --store ${spec}`, '/dev/null'],
      {
        encoding: 'utf8',
        cwd: dir,
        timeout: 20_000,
      },
    );
    expect(stats.stdout).toContain('scanned 6 records…');
  });

  it('bad input is one line and exit 2; a store without inspect is one line and exit 1', async () => {
    const badState = await idem(['keys', 'list', '--store', spec, '--state', 'done']);
    expect([badState.code, badState.stderr.trim().split('\n')]).toEqual([
      2,
      [expect.stringContaining('in_progress')],
    ]);
    const mixed = await idem([
      'keys',
      'list',
      '--store',
      spec,
      '--lease-ended',
      '1h',
      '--state',
      'completed',
    ]);
    expect([mixed.code, mixed.stderr]).toEqual([2, expect.stringContaining('drop --state completed')]);
    const badAge = await idem(['keys', 'list', '--store', spec, '--older-than', 'soon']);
    expect([badAge.code, badAge.stderr]).toEqual([2, expect.stringContaining('30s, 10m, 1h or 7d')]);
    const both = await idem(['keys', 'list', '--store', spec, '--scope', 'a', '--scope-hash', 'x']);
    expect([both.code, both.stderr]).toEqual([2, expect.stringContaining('not both')]);
    const badHash = await idem(['keys', 'list', '--store', spec, '--scope-hash', 'no spaces']);
    expect([badHash.code, badHash.stderr]).toEqual([2, expect.stringContaining('base64url')]);
    const noStore = await idem(['stats'], undefined);
    expect(noStore.code).toBe(2);
    const { inspect: _, ...bare } = memoryStore();
    expect(() => requireInspect(bare, 'idem stats')).toThrowError(
      expect.objectContaining({ exitCode: 1, message: expect.stringContaining('no inspect capability') }),
    );
  });

  it('keys show and keys list agree on states: a release after a takeover stays in progress, a guarded release is released', async () => {
    const store = memoryStore();
    const id = recordIdFor('retry-me', {});
    const req = { id, fingerprint: 'f', leaseMs: 1, ttlMs: 60_000, token: 't1' };
    await store.claim(req);
    await new Promise((r) => setTimeout(r, 5));
    await store.claim({ ...req, leaseMs: 30_000, token: 't2' }); // takeover: attempt 2
    await store.release(id, 't2');
    expect((await describeKey(store, 'retry-me', {})).state).toBe('in_progress');
    expect((await store.inspect!.list({ limit: 10 })).records[0]).toMatchObject({
      state: 'in_progress',
      attempt: 2,
    });
    const guardedId = recordIdFor('guarded', {});
    await store.claim({ ...req, id: guardedId, leaseMs: 30_000, token: 'g1' });
    await store.release(guardedId, 'g1', 60_000);
    expect((await describeKey(store, 'guarded', {})).state).toBe('released');
  });
});

/**
 * `idem keys show` and `idem purge` as users run them (bin/idem.js, spawned) against a real
 * store written by the gateway and by the library: the key is found by hashing it with the
 * caller's scope (never stored raw), another caller's credentials find nothing, and purge deletes
 * only expired records.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdem } from 'idem';
import { createGateway } from 'idem/gateway';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '../../bin/idem.js');
const dir = mkdtempSync(join(tmpdir(), 'idem-keys-'));
const db = join(dir, 'idem.db');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function idem(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
}

describe('idem keys show / idem purge', () => {
  it('finds a gateway key with the caller’s credentials, and only with them', async () => {
    const upstream = http.createServer((req, res) => {
      req.resume();
      res.writeHead(201, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const gateway = await createGateway({
      store: `sqlite:${db}`,
      purgeEvery: false,
      upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    });
    const url = await gateway.listen(0);
    const r = await fetch(`${url}/pay`, {
      method: 'POST',
      headers: { 'idempotency-key': 'order-42', authorization: 'Bearer alice' },
      body: '{"a":1}',
    });
    expect(r.status).toBe(201);
    await gateway.close();
    await new Promise((res) => upstream.close(res));

    const mine = await idem([
      'keys',
      'show',
      'order-42',
      '--store',
      `sqlite:${db}`,
      '--gateway',
      '-H',
      'authorization: Bearer alice',
    ]);
    expect(mine.code, mine.stderr).toBe(0);
    expect(mine.stdout).toContain('state: completed');
    expect(mine.stdout).toMatch(/outcome: \d+ bytes/);
    const theirs = await idem(
      ['keys', 'show', 'order-42', '--gateway', '-H', 'authorization: Bearer bob', '--json'],
      {
        IDEM_STORE: `sqlite:${db}`,
      },
    );
    expect(JSON.parse(theirs.stdout)).toMatchObject({ key: 'order-42', state: 'absent' });

    // the record carries the caller's scope hash: listed by alice's credentials, not by bob's
    const shown = await idem(
      ['keys', 'show', 'order-42', '--gateway', '-H', 'authorization: Bearer alice', '--json'],
      {
        IDEM_STORE: `sqlite:${db}`,
      },
    );
    const report = JSON.parse(shown.stdout);
    expect(report.scopeHash).toMatch(/^[\w-]{22}$/);
    expect(report.createdAt).toBeGreaterThan(Date.now() - 60_000);
    expect(report.completedAt).toBeGreaterThanOrEqual(report.createdAt);
    const list = async (...args: string[]) => {
      const r = await idem(['keys', 'list', '--store', `sqlite:${db}`, '--json', ...args]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout).records as { id: string }[]).map((x) => x.id);
    };
    expect(await list('--gateway', '-H', 'authorization: Bearer alice')).toEqual([report.recordId]);
    expect(await list('--scope-hash', report.scopeHash)).toEqual([report.recordId]);
    expect(await list('--gateway', '-H', 'authorization: Bearer bob')).toEqual([]);
    expect(await list('-H', 'authorization: Bearer alice')).toEqual([]); // not the gateway's namespace
  });

  it('finds a key longer than 255 characters that a route with a raised maxKeyLength stored', async () => {
    const upstream = http.createServer((req, res) => {
      req.resume();
      res.writeHead(201, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const path = join(dir, 'long.db');
    const gateway = await createGateway({
      store: `sqlite:${path}`,
      purgeEvery: false,
      upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      routes: [{ path: '/*', maxKeyLength: 600 }],
    });
    const url = await gateway.listen(0);
    const key = `order-${'x'.repeat(400)}`;
    const r = await fetch(`${url}/pay`, {
      method: 'POST',
      headers: { 'idempotency-key': key, authorization: 'Bearer alice' },
      body: '{}',
    });
    expect(r.status).toBe(201);
    await gateway.close();
    await new Promise((res) => upstream.close(res));
    const shown = await idem([
      'keys',
      'show',
      key,
      '--store',
      `sqlite:${path}`,
      '--gateway',
      '-H',
      'authorization: Bearer alice',
      '--json',
    ]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout).state).toBe('completed');
  });

  it('library keys with scope parts; JSON output; purge deletes only expired records', async () => {
    const store = sqliteStore({ path: db });
    const lib = createIdem({ store, scope: 'billing' });
    await lib.run('invoice-7', () => ({ total: 12 }), { input: { n: 7 } });
    await lib.run('short-lived', () => 1, { ttl: 30 });
    await lib.close();
    const shown = await idem([
      'keys',
      'show',
      'invoice-7',
      '--store',
      `sqlite:${db}`,
      '--scope',
      'billing',
      '--json',
    ]);
    const report = JSON.parse(shown.stdout);
    expect(report).toMatchObject({ state: 'completed', attempt: 1, encrypted: false });
    expect(report.fingerprint).toMatch(/.{16,}/);
    expect(report.recordId).not.toContain('invoice-7');
    await new Promise((r) => setTimeout(r, 60));
    const purged = await idem(['purge', '--store', `sqlite:${db}`, '--json']);
    expect(purged.code, purged.stderr).toBe(0);
    expect(JSON.parse(purged.stdout).deleted).toBeGreaterThanOrEqual(1);
    const still = await idem([
      'keys',
      'show',
      'invoice-7',
      '--store',
      `sqlite:${db}`,
      '--scope',
      'billing',
      '--json',
    ]);
    expect(JSON.parse(still.stdout).state).toBe('completed');
  });

  it('bad input: no store, a bad key, a bad header — one line, exit 2', async () => {
    const noStore = await idem(['keys', 'show', 'k'], { IDEM_STORE: '' });
    expect([noStore.code, noStore.stderr.trim()]).toEqual([
      2,
      expect.stringContaining('--store (or IDEM_STORE) is required'),
    ]);
    const badKey = await idem(['keys', 'show', 'bad key\u0001', '--store', `sqlite:${db}`]);
    expect(badKey.code).toBe(2);
    expect(badKey.stderr.trim().split('\n')).toHaveLength(1);
    const badHeader = await idem(['keys', 'show', 'k', '--store', `sqlite:${db}`, '-H', 'nocolon']);
    expect(badHeader.code).toBe(2);
  });
});

/**
 * Replays counted by a running gateway outlive it: a gateway (SQLite, Postgres, Redis) gets real
 * duplicate traffic, is closed, and `idem stats --json` / `idem keys show --json`, run as real
 * CLI processes (bin/idem.js) on the same store, report the replays and mismatches it counted.
 * The text output of `idem stats` is checked on `formatStats` itself.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGateway, storeFromSpec } from 'idem/gateway';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { formatStats, readCounters, storeStats } from '../../src/cli/inspect.ts';
import { zeroTotals } from '../../src/core/counters.ts';
import { memoryStore } from '../../src/stores/memory/index.ts';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix } from '../stores/fixtures/redis-suite.ts';

const BIN = join(import.meta.dirname, '../../bin/idem.js');
const dir = mkdtempSync(join(tmpdir(), 'idem-stats-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pgUp = await serviceAvailable('postgres');
const redisUp = await serviceAvailable('redis');

function idem(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: dir });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
}

/** Sends 1 + `duplicates` requests with `key`, then one with the key and another body (422). */
async function traffic(url: string, key: string, duplicates: number) {
  const send = (body: string) =>
    fetch(`${url}/pay`, {
      method: 'POST',
      headers: { 'idempotency-key': key, authorization: 'Bearer alice', 'content-type': 'application/json' },
      body,
    });
  expect((await send('{"amount":1}')).status).toBe(201);
  for (let i = 0; i < duplicates; i++) {
    const r = await send('{"amount":1}');
    expect(r.headers.get('idempotent-replayed')).toBe('true');
    await r.arrayBuffer();
  }
  expect((await send('{"amount":2}')).status).toBe(422);
}

async function scenario(spec: string) {
  let executed = 0;
  const upstream = http.createServer((req, res) => {
    req.resume();
    executed++;
    res.writeHead(201, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const gateway = await createGateway({
    store: spec,
    purgeEvery: false,
    upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
  });
  const url = await gateway.listen(0);
  await traffic(url, 'order-1', 4);
  await traffic(url, 'order-2', 2);
  await gateway.close(); // writes the counts it holds: well before its 5 s timer
  await new Promise((r) => upstream.close(r));
  expect(executed).toBe(2);

  const stats = await idem(['stats', '--store', spec, '--json']);
  expect(stats.code, stats.stderr).toBe(0);
  const report = JSON.parse(stats.stdout);
  expect(report.records).toBe(2);
  expect(report.counters).toMatchObject({ replays: 6, mismatches: 2, conflicts: 0, takeovers: 0 });

  // --since counts only the last span: 100 replays counted three hours ago drop out of --since 1h
  const direct = await storeFromSpec(spec);
  const threeHoursAgo = Math.floor((Date.now() - 3 * 3_600_000) / 60_000) * 60_000;
  await direct.counters!.add({
    buckets: [{ minute: threeHoursAgo, name: 'replays', value: 100 }],
    records: [],
  });
  await direct.close?.();
  const all = JSON.parse((await idem(['stats', '--store', spec, '--json'])).stdout);
  expect(all.counters.replays).toBe(106);
  const recent = await idem(['stats', '--store', spec, '--since', '1h', '--json']);
  expect(recent.code, recent.stderr).toBe(0);
  const lastHour = JSON.parse(recent.stdout);
  expect(lastHour.counters).toMatchObject({ replays: 6, mismatches: 2 });
  expect(Math.abs(lastHour.countersSince - (Date.now() - 3_600_000))).toBeLessThan(60_000);
  expect((await idem(['stats', '--store', spec, '--since', '5 parsecs'])).code).toBe(2);

  const key = ['--store', spec, '--gateway', '-H', 'authorization: Bearer alice'];
  const one = await idem(['keys', 'show', 'order-1', ...key, '--json']);
  expect(one.code, one.stderr).toBe(0);
  const shown = JSON.parse(one.stdout);
  expect(shown).toMatchObject({ state: 'completed', replays: 4 });
  expect(Date.now() - shown.lastReplayAt).toBeLessThan(60_000);
  const two = await idem(['keys', 'show', 'order-2', ...key]);
  expect(two.stdout).toMatch(/replays: 2 \(last \d+ s ago\)/);
}

describe('replays kept in the store, read by the CLI', () => {
  it('idem stats prints the kept counts, or says the store keeps none', async () => {
    const stats = await storeStats(memoryStore());
    const counts = {
      ...zeroTotals(),
      replays: 6,
      conflicts: 1,
      llm_calls_saved: 2,
      llm_cost_saved_microusd: 1500,
    };
    const text = formatStats(stats, counts);
    expect(text).toContain('  replays: 6');
    expect(text).toContain('  conflicts (in progress, 409): 1');
    expect(text).toContain('LLM calls saved: 2 (tokens: 0 input, 0 cached, 0 output; $0.0015)');
    expect(text).toContain('over the last 35 days');
    expect(formatStats(stats, counts, Date.UTC(2026, 0, 1))).toContain('since 2026-01-01T00:00:00.000Z');
    expect(formatStats(stats, undefined)).toContain('this store keeps no counters');
    expect(await readCounters({ ...memoryStore(), counters: undefined })).toBeUndefined();
  });

  it('a gateway on SQLite', async () => {
    await scenario(`sqlite:${join(dir, 'gw.db')}`);
  });

  it.skipIf(!pgUp)('a gateway on Postgres', async () => {
    const schema = uniqueName('idem_stats');
    const u = new URL(SERVICES.postgres);
    u.searchParams.set('schema', schema);
    const admin = new pg.Pool({ connectionString: SERVICES.postgres, max: 1 });
    try {
      await scenario(u.toString());
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });

  it.skipIf(!redisUp)('a gateway on Redis', async () => {
    const prefix = uniqueName('idem_stats');
    const admin = new Redis(SERVICES.redis);
    try {
      await scenario(`${SERVICES.redis}?prefix=${prefix}`);
    } finally {
      await deletePrefix(admin, prefix);
      admin.disconnect();
    }
  });

  it('persistStats: false keeps nothing in the store', async () => {
    const spec = `sqlite:${join(dir, 'off.db')}`;
    const upstream = http.createServer((req, res) => {
      req.resume();
      res.writeHead(201).end('{}');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const gateway = await createGateway({
      store: spec,
      purgeEvery: false,
      persistStats: false,
      upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    });
    await traffic(await gateway.listen(0), 'order-1', 2);
    await gateway.close();
    await new Promise((r) => upstream.close(r));
    const stats = JSON.parse((await idem(['stats', '--store', spec, '--json'])).stdout);
    expect(stats.counters).toMatchObject({ replays: 0, mismatches: 0 });
    await expect(
      createGateway({ upstream: 'http://127.0.0.1:1', store: 'memory', persistStats: 'yes' as never }),
    ).rejects.toThrow(/persistStats must be true or false/);
  });
});

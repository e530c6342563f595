/**
 * The SQLite outbox: `add` inside the caller's transaction on their own connection; relays on
 * connections of their own claim under SQLite's single writer, so two of them never publish
 * the same event, and per-key order holds.
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, expect, it } from 'vitest';
import { createRelay, sqliteOutbox } from '../../src/queue/outbox/index.ts';
import { recordingPublisher, until } from './outbox-helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'idem-outbox-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

async function setup() {
  const path = join(dir, `o${n++}.db`);
  const outbox = sqliteOutbox({ path });
  await outbox.migrate();
  const db = new DatabaseSync(path, { timeout: 10_000 });
  db.exec('CREATE TABLE claims (id TEXT PRIMARY KEY, status TEXT)');
  return { path, outbox, db };
}

it('add() commits and rolls back with the caller transaction', async () => {
  const { outbox, db } = await setup();
  db.exec('BEGIN IMMEDIATE');
  db.prepare('INSERT INTO claims VALUES (?, ?)').run('c1', 'approved');
  outbox.add(db, { topic: 'claims', payload: { c: 1 } });
  db.exec('ROLLBACK');
  db.exec('BEGIN IMMEDIATE');
  db.prepare('INSERT INTO claims VALUES (?, ?)').run('c2', 'approved');
  const id = outbox.add(db, { topic: 'claims', payload: { c: 2 }, headers: { trace: 't' } });
  db.exec('COMMIT');
  const { publisher, seen } = recordingPublisher();
  const relay = createRelay({ outbox, publisher });
  expect(await relay.runOnce()).toMatchObject({ claimed: 1, published: 1 });
  expect(seen).toEqual([expect.objectContaining({ id, payload: { c: 2 } })]);
  expect(await outbox.stats()).toEqual({ pending: 0, published: 1, parked: 0 });
  expect(() => outbox.add(db, { topic: 't', payload: () => 1 } as never)).toThrow(/not JSON/);
  expect(() => sqliteOutbox({ path: '' })).toThrow(/path/);
  expect(() => outbox.add(db, { topic: 't', payload: 1 })).toThrow(/not inside a transaction/);
  db.close();
  await outbox.close();
});

it('two relays on their own connections: each event published once, in order per key; parking and retryParked', async () => {
  const { path, outbox, db } = await setup();
  db.exec('BEGIN IMMEDIATE');
  for (let i = 0; i < 120; i++) outbox.add(db, { topic: 't', key: `k${i % 4}`, payload: { i } });
  outbox.add(db, { topic: 'poison', payload: { i: -1 } });
  db.exec('COMMIT');
  const { publisher, seen } = recordingPublisher((e) => (e.topic === 'poison' ? 'nope' : false));
  const second = sqliteOutbox({ path });
  const relays = [outbox, second].map((o) =>
    createRelay({ outbox: o, publisher, batchSize: 3, poll: 5, backoff: 1, maxBackoff: 2, maxAttempts: 3 }),
  );
  await Promise.all(relays.map((r) => r.start()));
  await until('all settled', async () => {
    const s = await outbox.stats();
    return s.published === 120 && s.parked === 1;
  });
  await Promise.all(relays.map((r) => r.stop()));
  const ok = seen.filter((s) => s.ok);
  expect(ok).toHaveLength(120);
  expect(new Set(ok.map((s) => s.id)).size).toBe(120);
  for (const k of ['k0', 'k1', 'k2', 'k3']) {
    const order = ok.filter((s) => s.key === k).map((s) => (s.payload as { i: number }).i);
    expect(order).toEqual([...order].sort((a, b) => a - b));
  }
  expect((await outbox.parked())[0]).toMatchObject({ topic: 'poison', attempts: 3, lastError: 'nope' });
  expect(await outbox.retryParked()).toBe(1);
  expect((await outbox.stats()).pending).toBe(1);
  expect(await outbox.purge(0)).toBe(120);
  db.close();
  await outbox.close();
  await second.close();
});

it('two relay processes on one SQLite file: every event published exactly once, in order per key', async () => {
  const { path, outbox, db } = await setup();
  const child = new URL('./outbox-sqlite-child.ts', import.meta.url).pathname;
  const relays = [0, 1].map(() => {
    const p = spawn(process.execPath, ['--conditions=idem-source', child, path], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines: string[] = [];
    createInterface({ input: p.stdout! }).on('line', (l) => lines.push(l));
    const exit = new Promise<number | null>((r) => p.once('exit', r));
    return { p, lines, exit };
  });
  const N = 240;
  try {
    await until('both relays ready', () => relays.every((r) => r.lines.includes('ready')));
    for (let i = 0; i < N; i += 60) {
      db.exec('BEGIN IMMEDIATE');
      for (let j = i; j < i + 60; j++) outbox.add(db, { topic: 't', key: `k${j % 6}`, payload: { i: j } });
      db.exec('COMMIT');
    }
    await until('all published', async () => (await outbox.stats()).published === N, 30_000);
  } finally {
    for (const r of relays) r.p.kill('SIGTERM');
  }
  expect(await Promise.all(relays.map((r) => r.exit))).toEqual([0, 0]);
  const published = relays.map((r) => r.lines.filter((l) => l.startsWith('ok ')).map((l) => l.split(' ')));
  expect(published[0]!.length + published[1]!.length).toBe(N); // none twice, none lost
  // (which relay wins each batch is up to the scheduler: one may take them all on a busy machine)
  expect(new Set([...published[0]!, ...published[1]!].map((x) => x[2])).size).toBe(N);
  // per key, each relay's own output is in order
  for (const own of published) {
    for (let k = 0; k < 6; k++) {
      const order = own.filter((x) => x[1] === `k${k}`).map((x) => Number(x[2]));
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
  }
  db.close();
  await outbox.close();
}, 60_000);

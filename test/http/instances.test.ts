/**
 * Two app instances (two engines, as on two servers) sharing one SQLite file: the claim in the
 * store, not in-process single-flight, is what keeps the handler to one execution.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hono } from 'hono';
import { createIdem } from 'idem';
import { idempotency } from 'idem/hono';
import type { IdempotencyOptions } from 'idem/http';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'idem-http-instances-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function instances(count: number, options: Partial<IdempotencyOptions> = {}) {
  const path = join(dir, `shared-${n++}.db`);
  let runs = 0;
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const apps = Array.from({ length: count }, (_, i) => {
    const app = new Hono();
    app.post(
      '/pay',
      idempotency({ idem: createIdem({ store: sqliteStore({ path }) }), ...options }),
      async (c) => {
        runs++;
        await gate;
        return c.json({ instance: i, run: runs }, 201);
      },
    );
    return app;
  });
  const send = (i: number) =>
    (apps[i % count] as Hono).request('/pay', {
      method: 'POST',
      headers: { 'idempotency-key': 'shared', 'content-type': 'application/json' },
      body: '{"amount":5}',
    });
  return { send, open, runs: () => runs };
}

describe('several instances on one store', () => {
  it('reject mode: one execution across instances; the others get 409', async () => {
    const x = instances(4, { onInProgress: 'reject' });
    const first = x.send(0);
    while (x.runs() === 0) await new Promise((r) => setTimeout(r, 5)); // the first holds the key
    const others = await Promise.all([1, 2, 3, 5, 6, 7].map((i) => x.send(i)));
    expect(others.map((r) => r.status)).toEqual([409, 409, 409, 409, 409, 409]);
    x.open();
    expect((await first).status).toBe(201);
    const replays = await Promise.all([1, 2, 3].map((i) => x.send(i)));
    const bodies = await Promise.all(replays.map((r) => r.text()));
    expect(new Set(bodies).size).toBe(1);
    expect(replays.every((r) => r.headers.get('idempotent-replayed') === 'true')).toBe(true);
    expect(x.runs()).toBe(1);
  });

  it('wait mode: duplicates on other instances wait for the stored response', async () => {
    const x = instances(3, { onInProgress: 'wait', waitTimeout: '10s' });
    const all = Array.from({ length: 9 }, (_, i) => x.send(i));
    await new Promise((r) => setTimeout(r, 100));
    x.open();
    const res = await Promise.all(all);
    const bodies = await Promise.all(res.map((r) => r.text()));
    expect(res.every((r) => r.status === 201)).toBe(true);
    expect(new Set(bodies).size).toBe(1);
    expect(x.runs()).toBe(1);
  });
});

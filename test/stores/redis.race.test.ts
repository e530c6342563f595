/**
 * The duplicate-delivery race against real Redis: 8 OS processes each receive every one of
 * 500 keys 4 times, in shuffled order, and run it through the engine. An append-only ledger
 * file, written by the actions themselves, must show exactly one execution per key, and every
 * one of the 32 answers per key must be that execution's value.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix } from './fixtures/redis-suite.ts';

const up = await serviceAvailable('redis');
const CHILD = new URL('./fixtures/redis-race-child.ts', import.meta.url).pathname;
const PROCESSES = 8;
const KEYS = 500;
const DELIVERIES = 4;

describe.skipIf(!up)('redis store: duplicate deliveries across OS processes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'idem-redis-race-'));
  const prefix = uniqueName('idem_redis');
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    const admin = new Redis(SERVICES.redis);
    await deletePrefix(admin, prefix);
    await admin.quit();
  });

  it(`${PROCESSES} processes × ${KEYS} keys × ${DELIVERIES} deliveries: one execution per key, identical outcomes`, async () => {
    const ledger = join(dir, 'ledger.log');
    const children = Array.from({ length: PROCESSES }, (_, i) => {
      const out = join(dir, `seen-${i}.json`);
      const cfg = {
        arg: { url: SERVICES.redis, prefix },
        ledger,
        out,
        keys: KEYS,
        deliveries: DELIVERIES,
        lanes: 16,
      };
      const child = spawn(process.execPath, ['--conditions=source', CHILD, JSON.stringify(cfg)], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
      const exit = new Promise<number | null>((resolve) => child.once('exit', resolve));
      return { child, lines, exit, out };
    });
    for (const c of children) expect((await c.lines.next()).value).toBe('READY');
    const start = performance.now();
    for (const c of children) c.child.stdin!.write('GO\n');
    expect(await Promise.all(children.map((c) => c.exit))).toEqual(children.map(() => 0));
    const elapsed = performance.now() - start;

    const executions = new Map<string, string[]>();
    for (const line of readFileSync(ledger, 'utf8').split('\n').filter(Boolean)) {
      const [key, , value] = line.split(' ');
      executions.set(key!, [...(executions.get(key!) ?? []), value!]);
    }
    expect(executions.size).toBe(KEYS);
    const twice = [...executions].filter(([, values]) => values.length !== 1);
    expect(twice).toEqual([]);

    const reports = children.map(
      (c) =>
        JSON.parse(readFileSync(c.out, 'utf8')) as {
          seen: Record<string, string[]>;
          events: Record<string, number>;
        },
    );
    for (const [key, [executed]] of executions) {
      const all = reports.flatMap((r) => r.seen[key] ?? []);
      expect(all, key).toHaveLength(PROCESSES * DELIVERIES);
      expect(new Set(all), key).toEqual(new Set([executed]));
    }
    const events: Record<string, number> = {};
    for (const r of reports) for (const [k, n] of Object.entries(r.events)) events[k] = (events[k] ?? 0) + n;
    expect(events.acquired).toBe(KEYS);
    expect(events.wait).toBeGreaterThan(0); // processes really met on the same keys mid-action
    console.log(
      `[redis race] ${PROCESSES * KEYS * DELIVERIES} deliveries in ${Math.round(elapsed)} ms: ${JSON.stringify(events)}`,
    );
  });
});

/**
 * The race: 8 OS processes, 500 keys, every key delivered 4 times to every process
 * (32 deliveries per key, 16 000 in all) through the engine on one Postgres store. The ledger
 * file, appended by the action itself, must hold exactly one execution per key, and all 32
 * deliveries of a key must see that execution's value.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { serviceAvailable, uniqueName } from '../helpers/services.ts';
import { adminPool, dropSchema, PG_URL } from './fixtures/postgres-suite.ts';

const up = await serviceAvailable('postgres');
const PROCESSES = 8;
const KEYS = 500;
const DELIVERIES = 4;

describe.skipIf(!up)('postgres store: 8 processes × 500 keys × 4 deliveries', () => {
  const schema = uniqueName('idem_pg_race');
  const dir = mkdtempSync(join(tmpdir(), 'idem-pg-race-'));
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    const admin = adminPool();
    await dropSchema(admin, schema);
    await admin.end();
  });

  it('exactly one execution per key, and every delivery sees its value', async () => {
    const ledger = join(dir, 'ledger.log');
    const run = uniqueName('r');
    const keys = Array.from({ length: KEYS }, (_, i) => `${run}-${i}`);
    const cfg = {
      store: { connectionString: PG_URL, schema, max: 3 }, // 8 processes share max_connections
      ledger,
      keys,
      deliveries: DELIVERIES,
      concurrency: 16,
    };
    const worker = new URL('./fixtures/postgres-race-worker.ts', import.meta.url).pathname;
    const children = Array.from({ length: PROCESSES }, () => {
      const proc = spawn(process.execPath, ['--conditions=source', worker, JSON.stringify(cfg)], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
      const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      const line = async () => {
        const n = await lines.next();
        if (n.done) throw new Error('worker exited early');
        return n.value;
      };
      return { proc, line, exit };
    });
    for (const c of children) expect(await c.line()).toBe('READY');
    const started = Date.now();
    for (const c of children) c.proc.stdin!.write('GO\n');
    const seen = await Promise.all(
      children.map(async (c) => JSON.parse(await c.line()) as Record<string, string[]>),
    );
    expect(await Promise.all(children.map((c) => c.exit))).toEqual(children.map(() => 0));
    const elapsed = Date.now() - started;

    const executions = new Map<string, string[]>();
    for (const line of readFileSync(ledger, 'utf8').split('\n').filter(Boolean)) {
      const [key, pid] = line.split(' ') as [string, string];
      executions.set(key, [...(executions.get(key) ?? []), pid]);
    }
    expect(executions.size).toBe(KEYS);
    for (const key of keys) {
      const pids = executions.get(key);
      expect(pids, key).toHaveLength(1);
      const values = seen.flatMap((s) => s[key] ?? []);
      expect(values, key).toHaveLength(PROCESSES * DELIVERIES);
      expect(new Set(values).size, key).toBe(1);
      expect(values[0]!.startsWith(`${pids![0]}:`), key).toBe(true);
    }
    console.info(`[postgres race] ${PROCESSES * KEYS * DELIVERIES} deliveries in ${elapsed} ms`);
  }, 120_000);
});

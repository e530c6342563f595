/**
 * Real races between OS processes sharing the store: many processes hammering the same keys,
 * and a holder killed with SIGKILL mid-action.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, expect, it } from 'vitest';
import { createIdem } from '../core/engine.ts';
import { InProgressError } from '../core/errors.ts';
import { sleep, uid } from './contract.ts';
import type { SuiteEnv } from './index.ts';
import type { WorkerConfig } from './worker.ts';

const WORKER = new URL(`./worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url)
  .pathname;

function startWorker(cfg: WorkerConfig): {
  child: ChildProcess;
  lines: AsyncIterator<string>;
  exit: Promise<number>;
} {
  const child = spawn(process.execPath, ['--conditions=source', WORKER, JSON.stringify(cfg)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const exit = new Promise<number>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 137 : 1))),
  );
  return { child, lines, exit };
}

async function nextLine(lines: AsyncIterator<string>, what: string): Promise<string> {
  const timeout = sleep(60_000).then(() => ({ done: true, value: undefined }));
  const r = await Promise.race([lines.next(), timeout]);
  if (r.done || r.value === undefined) throw new Error(`worker ended before ${what}`);
  return r.value;
}

export function processTests(
  env: SuiteEnv,
  processStore: { module: string; arg?: unknown },
  processes: number,
) {
  const dir = mkdtempSync(join(tmpdir(), 'idem-conformance-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const ledgerCounts = (file: string) => {
    const counts = new Map<string, number>();
    for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
      const key = line.split(' ')[0]!;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return counts;
  };

  it(`${processes} OS processes racing on the same keys: exactly one execution per key, identical outcomes`, async () => {
    const ledger = join(dir, `race-${uid()}.log`);
    const keys = Array.from({ length: 150 }, (_, i) => `race-${i}-${uid()}`);
    const cfg: WorkerConfig = {
      mode: 'race',
      ...processStore,
      ledger,
      leaseMs: 5_000,
      keys,
      deliveries: 2,
      concurrency: 8,
    };
    const workers = Array.from({ length: processes }, () => startWorker(cfg));
    for (const w of workers) expect(await nextLine(w.lines, 'READY')).toBe('READY');
    for (const w of workers) w.child.stdin!.write('GO\n');
    const seen = await Promise.all(workers.map(async (w) => JSON.parse(await nextLine(w.lines, 'results'))));
    expect(await Promise.all(workers.map((w) => w.exit))).toEqual(workers.map(() => 0));

    const counts = ledgerCounts(ledger);
    for (const key of keys) expect(counts.get(key), key).toBe(1);
    expect(counts.size).toBe(keys.length);
    for (const key of keys) {
      const values = seen.flatMap((s: Record<string, string[]>) => s[key] ?? []);
      expect(values).toHaveLength(processes * 2);
      expect(new Set(values).size, key).toBe(1);
    }
  });

  it('a holder killed with SIGKILL mid-action is taken over after one lease, never before', async () => {
    const leaseMs = 1_500;
    const ledger = join(dir, `kill-${uid()}.log`);
    const key = `kill-${uid()}`;
    const cfg: WorkerConfig = {
      mode: 'hold',
      ...processStore,
      ledger,
      leaseMs,
      keys: [key],
      deliveries: 1,
      concurrency: 1,
    };
    const w = startWorker(cfg);
    expect(await nextLine(w.lines, 'HOLDING')).toBe('HOLDING');
    await sleep(leaseMs * 0.5);
    w.child.kill('SIGKILL');
    const killedAt = Date.now();
    await w.exit;

    const rescuer = createIdem({ store: env.store(), lease: leaseMs });
    let takenAt = 0;
    let ctxSeen: { attempt: number; mayHaveRun: boolean } | undefined;
    while (!takenAt) {
      try {
        await rescuer.run(key, (ctx) => {
          takenAt = Date.now();
          ctxSeen = { attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun };
          return 'rescued';
        });
      } catch (e) {
        expect(e).toBeInstanceOf(InProgressError);
        expect(Date.now() - killedAt).toBeLessThan(leaseMs + 2_000);
        await sleep(20);
      }
    }
    // The last renewal was at most lease/3 before the kill, so the lease ran at least 2/3 of it past the kill.
    expect(takenAt - killedAt).toBeGreaterThanOrEqual((leaseMs * 2) / 3 - 50);
    expect(ctxSeen).toEqual({ attempt: 2, mayHaveRun: true });
    expect(ledgerCounts(ledger).get(key)).toBe(1);
    expect(await rescuer.run(key, () => 'again')).toBe('rescued');
  });
}

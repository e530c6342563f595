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
import { withDeadline } from '../core/deadline.ts';
import { createIdem } from '../core/engine.ts';
import { InProgressError } from '../core/errors.ts';
import { sleep, uid } from './contract.ts';
import type { SuiteEnv } from './suite-env.ts';
import type { WorkerConfig } from './worker.ts';

// Workers start the way this module was resolved: from source (a checkout, where `idem/…` maps to
// src/*.ts through the 'idem-source' condition) or compiled (an installed package, where Node will not
// strip types under node_modules, so the 'idem-source' condition must not be passed on).
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER = new URL(`./worker${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url).pathname;
const WORKER_ARGS = FROM_SOURCE ? ['--conditions=idem-source'] : [];

function startWorker(cfg: WorkerConfig): {
  child: ChildProcess;
  lines: AsyncIterator<string>;
  exit: Promise<number>;
} {
  const child = spawn(process.execPath, [...WORKER_ARGS, WORKER, JSON.stringify(cfg)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const exit = new Promise<number>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 137 : 1))),
  );
  return { child, lines, exit };
}

async function nextLine(lines: AsyncIterator<string>, what: string, ms = 60_000): Promise<string> {
  const r = await withDeadline(
    lines.next(),
    ms,
    () => new Error(`no ${what} from the worker within ${ms} ms`),
  );
  if (r.done || r.value === undefined) throw new Error(`worker ended before ${what}`);
  return r.value;
}

/** Options of {@link raceProcesses}. */
export interface RaceOptions {
  /** The module (exporting `createStore(arg)`) and argument that build the store in each process. */
  processStore: { module: string; arg?: unknown };
  /** OS processes racing. */
  processes: number;
  /** Distinct keys; each process delivers every one of them `deliveries` times. */
  keys: number;
  deliveries: number;
  /** Deliveries in flight at once inside each process. Default 8. */
  concurrency?: number;
  /**
   * Each action lasts a random 0–`actionMs` ms. Default 3. On a store whose round trips are
   * slow next to that, raise it so processes still meet on a key while its action runs.
   */
  actionMs?: number;
  /** The engine's lease in each process, ms. Default 5000. */
  leaseMs?: number;
  /** How long the whole race may take, ms. Default 120 000. */
  timeoutMs?: number;
}

/** What {@link raceProcesses} measured, once its checks passed. */
export interface RaceReport {
  /** processes × keys × deliveries. */
  deliveries: number;
  /** From the start signal to the last answer. */
  elapsedMs: number;
  /** Engine events summed over every process ('replayed' split into `_shared` / `_stored`). */
  events: Record<string, number>;
}

/**
 * Races `processes` OS processes on one store: each delivers every key `deliveries` times, in
 * its own shuffled order, through `idem.run`. Checks, with vitest's `expect`, that every
 * process ends cleanly, that the side-effect ledger (a file the actions append to) holds
 * exactly one execution per key, and that every delivery of a key answered that execution's
 * value. Call it inside a test.
 *
 * @example
 * it('8 processes × 500 keys × 4 deliveries', async () => {
 *   const report = await raceProcesses({ processStore, processes: 8, keys: 500, deliveries: 4 });
 *   expect(report.events.wait).toBeGreaterThan(0);
 * }, 180_000);
 */
export async function raceProcesses(options: RaceOptions): Promise<RaceReport> {
  const { processes, deliveries, timeoutMs = 120_000 } = options;
  const dir = mkdtempSync(join(tmpdir(), 'idem-race-'));
  const workers: ReturnType<typeof startWorker>[] = [];
  try {
    const ledger = join(dir, 'ledger.log');
    const keys = Array.from({ length: options.keys }, (_, i) => `race-${i}-${uid()}`);
    const cfg: WorkerConfig = {
      mode: 'race',
      ...options.processStore,
      ledger,
      leaseMs: options.leaseMs ?? 5_000,
      keys,
      deliveries,
      concurrency: options.concurrency ?? 8,
      actionMs: options.actionMs ?? 3,
    };
    for (let i = 0; i < processes; i++) workers.push(startWorker(cfg));
    for (const w of workers) expect(await nextLine(w.lines, 'READY')).toBe('READY');
    const started = performance.now();
    for (const w of workers) w.child.stdin!.write('GO\n');
    const reports = await Promise.all(
      workers.map(async (w) => JSON.parse(await nextLine(w.lines, 'results', timeoutMs)) as WorkerReport),
    );
    const elapsedMs = performance.now() - started;
    expect(await Promise.all(workers.map((w) => w.exit))).toEqual(workers.map(() => 0));

    const executed = new Map<string, string[]>();
    for (const line of readFileSync(ledger, 'utf8').split('\n').filter(Boolean)) {
      const [key, , value] = line.split(' ') as [string, string, string];
      executed.set(key, [...(executed.get(key) ?? []), value]);
    }
    const twice = [...executed].filter(([, values]) => values.length !== 1);
    expect(twice, 'keys executed more than once').toEqual([]);
    expect(executed.size).toBe(keys.length);
    for (const key of keys) {
      const value = executed.get(key)?.[0];
      const seen = reports.flatMap((r) => r.seen[key] ?? []);
      expect(seen, key).toHaveLength(processes * deliveries);
      expect(new Set(seen), key).toEqual(new Set([value]));
    }
    const events: Record<string, number> = {};
    for (const r of reports) for (const [k, n] of Object.entries(r.events)) events[k] = (events[k] ?? 0) + n;
    expect(events.acquired).toBe(keys.length);
    return { deliveries: processes * keys.length * deliveries, elapsedMs, events };
  } finally {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface WorkerReport {
  seen: Record<string, string[]>;
  events: Record<string, number>;
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
    await raceProcesses({ processStore, processes, keys: 150, deliveries: 2 });
  }, 150_000); // starting Node processes on a loaded CI machine takes seconds: not vitest's 5 s default

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
  }, 60_000);
}

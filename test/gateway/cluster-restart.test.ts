/**
 * startWorkers() restarts a worker that dies, and gives up (exit code 1 through `failed`) when
 * its replacements keep failing at start-up, instead of restarting forever.
 */
import cluster from 'node:cluster';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { startWorkers } from '../../src/gateway/cluster.ts';

it('a dead worker is replaced; replacements failing at start-up 3 times in a row stop the primary', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'idem-restart-'));
  const crashFile = join(dir, 'crash');
  const lines: string[] = [];
  cluster.setupPrimary({ execArgv: ['--conditions=idem-source'] });
  const workers = await startWorkers({
    workers: 1,
    exec: join(import.meta.dirname, 'fixtures/crash-worker.ts'),
    args: [],
    env: { CRASH_FILE: crashFile },
    log: (line) => lines.push(line),
    restartDelayMs: 10,
    maxStartFailures: 3,
  });
  try {
    const [first] = workers.pids();
    process.kill(first as number, 'SIGKILL');
    for (let i = 0; i < 600 && !(workers.pids().length === 1 && workers.pids()[0] !== first); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(workers.pids()).toHaveLength(1);
    expect(workers.pids()[0]).not.toBe(first);
    expect(lines[0]).toBe(
      `idem: gateway worker ${first} exited unexpectedly (SIGKILL); starting another in 10 ms`,
    );

    writeFileSync(crashFile, 'x');
    const [second] = workers.pids();
    process.kill(second as number, 'SIGKILL');
    expect(await workers.failed).toBe(1);
    const failures = lines.filter((l) => l.includes('failed at start-up: the store is gone'));
    expect(failures, lines.join('\n')).toHaveLength(3);
    expect(lines.at(-1)).toMatch(/3 restarted workers in a row failed at start-up; stopping$/);
    expect(workers.pids()).toEqual([]);
  } finally {
    await workers.close();
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);

it('while another worker still serves, failing replacements are retried instead of stopping the primary', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'idem-restart-'));
  const crashFile = join(dir, 'crash');
  const lines: string[] = [];
  cluster.setupPrimary({ execArgv: ['--conditions=idem-source'] });
  const workers = await startWorkers({
    workers: 2,
    exec: join(import.meta.dirname, 'fixtures/crash-worker.ts'),
    args: [],
    env: { CRASH_FILE: crashFile },
    log: (line) => lines.push(line),
    restartDelayMs: 10,
    maxStartFailures: 2,
  });
  let stopped = false;
  void workers.failed.then(() => (stopped = true));
  try {
    const [first, other] = workers.pids();
    writeFileSync(crashFile, 'x'); // the store is gone: every replacement fails at start-up
    process.kill(first as number, 'SIGKILL');
    const failures = () => lines.filter((l) => l.includes('failed at start-up: the store is gone')).length;
    for (let i = 0; i < 600 && failures() < 4; i++) await new Promise((r) => setTimeout(r, 50));
    expect(failures(), lines.join('\n')).toBeGreaterThanOrEqual(4); // past maxStartFailures
    expect(stopped).toBe(false);
    expect(workers.pids()).toEqual([other]);
    rmSync(crashFile); // the store is back: the next replacement listens
    for (let i = 0; i < 600 && workers.pids().length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    expect(workers.pids()).toHaveLength(2);
    expect(stopped).toBe(false);
  } finally {
    await workers.close();
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);

/**
 * examples/agent: the refund agent SIGKILLed and resumed makes every effect once; killed right
 * after a ledger write it still does (the interrupted tool step re-runs with the same downstream
 * key); and the control without idem, killed the same way, duplicates a refund and exits 1.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';

function agent(...args: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'idem-agent-'));
  try {
    const main = new URL('../../examples/agent/main.ts', import.meta.url).pathname;
    return spawnSync(process.execPath, ['--conditions=idem-source', main, ...args, '--dir', dir], {
      encoding: 'utf8',
      timeout: 90_000,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

it('the example agent, SIGKILLed at random points and resumed, makes every tool effect exactly once', () => {
  const r = agent('--tickets', '3', '--kills', '3', '--seed', '11');
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/agent processes: +[2-4] \([1-3] killed with SIGKILL mid-run\)/);
  expect(r.stdout).toContain('3/3 orders refunded exactly once, 3/3 tickets closed exactly once');
  expect(r.stdout).toMatch(/LLM calls: +\d+ billed vs 12 logical/);
  expect(r.stdout).toContain('✓ every tool effect happened exactly once');
});

it('killed right after a ledger write: still once with idem; the control without idem refunds twice, exit 1', () => {
  const once = agent('--tickets', '2', '--kills', '2', '--kill-at-effect');
  expect([once.stderr, once.status]).toEqual(['', 0]);
  expect(once.stdout).toMatch(/agent processes: +3 \(2 killed/);
  expect(once.stdout).toContain('2/2 orders refunded exactly once, 2/2 tickets closed exactly once');

  const control = agent('--tickets', '2', '--kills', '1', '--kill-at-effect', '--without-idem');
  expect(control.stderr).toBe('');
  expect(control.status).toBe(1);
  expect(control.stdout).toMatch(/✗ effects duplicated or missing: \[\{"id":"O-10\d","n":[23]\}/);
});

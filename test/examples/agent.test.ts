import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';

it('the example agent, SIGKILLed at random points and resumed, makes every tool effect exactly once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'idem-agent-'));
  try {
    const main = new URL('../../examples/agent/main.ts', import.meta.url).pathname;
    const r = spawnSync(
      process.execPath,
      ['--conditions=idem-source', main, '--tickets', '3', '--kills', '3', '--seed', '11', '--dir', dir],
      { encoding: 'utf8', timeout: 90_000 },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/agent killed \(SIGKILL\)/);
    expect(r.stdout).toMatch(/agent processes: +[2-4] \([1-3] killed with SIGKILL mid-run\)/);
    expect(r.stdout).toContain('3/3 orders refunded exactly once, 3/3 tickets closed exactly once');
    expect(r.stdout).toMatch(/LLM calls: +\d+ billed vs 12 logical/);
    expect(r.stdout).toContain('✓ every tool effect happened exactly once');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

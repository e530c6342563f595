import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';

it('the claims pipeline pays every claim exactly once through crashes and duplicate deliveries', () => {
  const dir = mkdtempSync(join(tmpdir(), 'idem-claims-'));
  try {
    const main = new URL('../../examples/claims-pipeline/main.ts', import.meta.url).pathname;
    const r = spawnSync(
      process.execPath,
      ['--conditions=idem-source', main, '--claims', '16', '--dir', dir],
      {
        encoding: 'utf8',
        timeout: 90_000,
      },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/died \(SIGKILL\)/);
    expect(r.stdout).toContain('claims paid:             16/16, each exactly once: yes');
    expect(r.stdout).toContain('16/16 claims got the same payment id on every delivery');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

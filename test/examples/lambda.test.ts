import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';

it('the Lambda example charges once across two containers, and refuses the same order with another amount', () => {
  const local = new URL('../../examples/lambda/local.ts', import.meta.url).pathname;
  const r = spawnSync(process.execPath, ['--conditions=idem-source', local], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/invoke 1 \(container a\): 200 .*"replayed":false/);
  expect(r.stdout).toMatch(/invoke 2 \(container b, same event\): 200 .*"replayed":true/);
  expect(r.stdout).toContain('invoke 3 (same order, other amount): 422 {"error":"fingerprint_mismatch"}');
  expect(r.stdout).toContain('charges made: 1\n');
  expect(r.stdout).toContain('charged once: yes');
});

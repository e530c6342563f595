/**
 * The quick start of docs/workflows.md runs as written (its first ts block), twice: the second
 * run replays the completed run and prints the same line.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);

it('docs/workflows.md: the quick start runs as written, and a second run replays it', async () => {
  const page = readFileSync(new URL('../../docs/workflows.md', import.meta.url), 'utf8');
  const code = /```ts\n([\s\S]*?)```/.exec(page)?.[1];
  expect(code?.split('\n').filter((l) => l.trim()).length).toBeLessThanOrEqual(10);
  // inside the package, so `idem/…` resolves; run from an empty directory (the .idem/ database goes there)
  const script = new URL(`./.quickstart-workflows-${process.pid}.ts`, import.meta.url).pathname;
  const cwd = mkdtempSync(join(tmpdir(), 'idem-quickstart-'));
  writeFileSync(script, code ?? '');
  try {
    const first = await run(process.execPath, ['--conditions=idem-source', script], { cwd });
    expect(first.stdout.trim()).toBe('42 2');
    const second = await run(process.execPath, ['--conditions=idem-source', script], { cwd });
    expect(second.stdout.trim()).toBe('42 2');
  } finally {
    rmSync(script, { force: true });
    rmSync(cwd, { recursive: true, force: true });
  }
});

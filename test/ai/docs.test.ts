/**
 * The quick starts of docs/ai/*.md run as written (the first ts block of each page), against the
 * local server through the SDKs' base-URL environment variables: one billed call, one replay.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type TestServer } from './server.ts';

const run = promisify(execFile);
let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

it.each([
  ['openai', { OPENAI_API_KEY: 'sk-docs', OPENAI_BASE_URL: '/v1' }],
  ['anthropic', { ANTHROPIC_API_KEY: 'sk-docs', ANTHROPIC_BASE_URL: '' }],
])('docs/ai/%s.md: the quick start runs as written, billed once', async (name, env) => {
  server.reset();
  const page = readFileSync(new URL(`../../docs/ai/${name}.md`, import.meta.url), 'utf8');
  const code = /```ts\n([\s\S]*?)```/.exec(page)?.[1];
  expect(code?.split('\n').filter((l) => l.trim()).length).toBeLessThanOrEqual(10);
  // inside the package, so `idem/…` and the SDK resolve; run from an empty directory
  const script = new URL(`./.quickstart-${name}-${process.pid}.ts`, import.meta.url).pathname;
  const cwd = mkdtempSync(join(tmpdir(), 'idem-quickstart-'));
  writeFileSync(script, code ?? '');
  try {
    const urls = Object.fromEntries(
      Object.entries(env).map(([k, v]) => [k, k.endsWith('BASE_URL') ? server.url + v : v]),
    );
    const { stdout } = await run(process.execPath, ['--conditions=idem-source', script], {
      cwd,
      env: { ...process.env, ...urls },
    });
    expect(stdout.trim()).toBe('true');
    expect(server.billed).toBe(1);
    expect(server.requests).toBe(1);
  } finally {
    rmSync(script, { force: true });
    rmSync(cwd, { recursive: true, force: true });
  }
});

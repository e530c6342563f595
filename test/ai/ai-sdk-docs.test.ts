/**
 * The quick start of docs/ai/ai-sdk.md runs as written (its first ts block) against the local
 * server through `@ai-sdk/openai`'s OPENAI_BASE_URL: one billed call, one replay.
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

it('docs/ai/ai-sdk.md: the quick start runs as written, billed once', async () => {
  const page = readFileSync(new URL('../../docs/ai/ai-sdk.md', import.meta.url), 'utf8');
  const code = /```ts\n([\s\S]*?)```/.exec(page)?.[1] ?? '';
  expect(code.split('\n').filter((l) => l.trim()).length).toBeLessThanOrEqual(10);
  // inside the package, so `idem/…` and `ai` resolve; run from an empty directory
  const script = new URL(`./.quickstart-ai-sdk-${process.pid}.ts`, import.meta.url).pathname;
  const cwd = mkdtempSync(join(tmpdir(), 'idem-quickstart-'));
  writeFileSync(script, code);
  try {
    const { stdout } = await run(process.execPath, ['--conditions=idem-source', script], {
      cwd,
      env: { ...process.env, OPENAI_API_KEY: 'sk-docs', OPENAI_BASE_URL: `${server.url}/v1` },
    });
    expect(stdout.trim()).toBe('true true');
    expect(server.billed).toBe(1);
    expect(server.requests).toBe(1);
  } finally {
    rmSync(script, { force: true });
    rmSync(cwd, { recursive: true, force: true });
  }
});

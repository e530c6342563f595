/**
 * docs/ai/gateway-preset.md's quick start runs as written: its `idem serve` line (with
 * `--upstream` added, pointing at the local provider server, and a free port instead of 8080,
 * the only changes) and its TypeScript block: one billed call, one marked replay.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type TestServer } from './server.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

it('docs/ai/gateway-preset.md: the quick start runs as written, billed once', async () => {
  const page = readFileSync(join(ROOT, 'docs/ai/gateway-preset.md'), 'utf8');
  const command = /```sh\n(npx idem serve [^\n]*)\n```/.exec(page)?.[1];
  const code = /```ts\n([\s\S]*?)```/.exec(page)?.[1];
  expect(command).toContain('--preset openai');
  expect(code?.split('\n').filter((l) => l.trim()).length).toBeLessThanOrEqual(10);
  const port = String(await freePort());
  const cwd = mkdtempSync(join(tmpdir(), 'idem-preset-quickstart-'));
  const args = command!
    .replace(/^npx idem /, '')
    .replace('--port 8080', `--port ${port}`)
    .split(' ');
  const gateway = spawn(process.execPath, [join(ROOT, 'bin/idem.js'), ...args, '--upstream', server.url], {
    cwd,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const script = join(import.meta.dirname, `.quickstart-gateway-${process.pid}.ts`);
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      gateway.stdout.on('data', (d) => {
        out += d;
        if (out.includes('idem gateway')) resolve();
      });
      gateway.once('exit', (c) => reject(new Error(`idem serve exited ${c}`)));
    });
    writeFileSync(script, code!.replace('127.0.0.1:8080', `127.0.0.1:${port}`));
    const { stdout } = await run(process.execPath, ['--conditions=idem-source', script], {
      cwd,
      env: { ...process.env, OPENAI_API_KEY: 'sk-docs' },
    });
    expect(stdout.trim()).toBe('true');
    expect([server.requests, server.billed]).toEqual([1, 1]);
  } finally {
    gateway.kill('SIGTERM');
    rmSync(script, { force: true });
    rmSync(cwd, { recursive: true, force: true });
  }
});

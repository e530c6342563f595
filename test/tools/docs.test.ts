/**
 * The quick starts of docs/tools.md run as written: the MCP server (first ts block) as a real
 * stdio server called by the SDK client through the page's client snippet (second block), and
 * the AI SDK tool (third block) against the local OpenAI-compatible server.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type TestServer } from '../ai/server.ts';

const run = promisify(execFile);
const page = readFileSync(new URL('../../docs/tools.md', import.meta.url), 'utf8');
const blocks = [...page.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
const lines = (code: string) => code.split('\n').filter((l) => l.trim()).length;
let server: TestServer;
let cwd: string;
const scripts: string[] = [];
beforeAll(async () => {
  server = await startServer();
  cwd = mkdtempSync(join(tmpdir(), 'idem-tools-docs-'));
});
afterAll(async () => {
  await server.close();
  for (const s of scripts) rmSync(s, { force: true });
  rmSync(cwd, { recursive: true, force: true });
});

/** A script inside the package (so `idem/…` and the SDKs resolve), to run from an empty directory. */
function script(name: string, code: string): string {
  const path = new URL(`./.quickstart-${name}-${process.pid}.ts`, import.meta.url).pathname;
  writeFileSync(path, code);
  scripts.push(path);
  return path;
}

it('docs/tools.md: the MCP server quick start, called twice with callToolOnce and one key, runs the tool once', async () => {
  expect(blocks).toHaveLength(3);
  expect(lines(blocks[0]!)).toBeLessThanOrEqual(10);
  const serverScript = script('mcp-server', blocks[0]!);
  const snippet = blocks[1]!.split('\n');
  const imports = snippet.filter((l) => l.startsWith('import ')).join('\n');
  const body = snippet.filter((l) => !l.startsWith('import ')).join('\n  ');
  const client = script(
    'mcp-client',
    `${imports}
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
const client = new Client({ name: 'docs', version: '1.0.0' });
await client.connect(new StdioClientTransport({ command: process.execPath, args: ['--conditions=idem-source', ${JSON.stringify(serverScript)}], cwd: process.cwd() }));
const texts = [];
for (let i = 0; i < 2; i++) {
  ${body}
  texts.push([result.content[0].text, result._meta?.['idem/replayed'] ?? false]);
}
console.log(JSON.stringify(texts));
await client.close();
`,
  );
  const { stdout } = await run(process.execPath, ['--conditions=idem-source', client], { cwd });
  const [[first, r1], [second, r2]] = JSON.parse(stdout.trim()) as [[string, boolean], [string, boolean]];
  expect(first).toMatch(/^refund [0-9a-f-]{36} for A-1$/);
  expect([second, r1, r2]).toEqual([first, false, true]);
});

it('two processes of the quick-start server on one store: the same key from two clients at once runs the tool once', async () => {
  const serverScript = script('mcp-server-2', blocks[0]!);
  const client = script(
    'mcp-two',
    `import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { callToolOnce } from 'idem/mcp';
const clients = [new Client({ name: 'a', version: '1' }), new Client({ name: 'b', version: '1' })];
const params = { command: process.execPath, args: ['--conditions=idem-source', ${JSON.stringify(serverScript)}], cwd: process.cwd() };
await Promise.all(clients.map((c) => c.connect(new StdioClientTransport(params))));
const call = (c) => callToolOnce(c, { name: 'refund', arguments: { order: 'B-2' } }, { key: 'two-processes' });
const results = await Promise.all(clients.map(call));
console.log(JSON.stringify(results.map((r) => r.content[0].text)));
await Promise.all(clients.map((c) => c.close()));
`,
  );
  const { stdout } = await run(process.execPath, ['--conditions=idem-source', client], { cwd });
  const [a, b] = JSON.parse(stdout.trim()) as [string, string];
  expect(a).toMatch(/^refund [0-9a-f-]{36} for B-2$/);
  expect(b).toBe(a);
});

it('docs/tools.md: the AI SDK quick start runs as written: the model is billed twice, the tool runs once', async () => {
  expect(lines(blocks[2]!)).toBeLessThanOrEqual(10);
  server.reset();
  server.set({ toolCalls: true });
  const { stdout } = await run(process.execPath, ['--conditions=idem-source', script('ai-sdk', blocks[2]!)], {
    cwd,
    env: { ...process.env, OPENAI_API_KEY: 'sk-docs', OPENAI_BASE_URL: `${server.url}/v1` },
  });
  expect(stdout.trim()).toBe('true');
  expect(server.billed).toBe(2);
});

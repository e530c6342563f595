/**
 * idem/ai-sdk across processes (real `ai` + `@ai-sdk/openai`, local server): duplicates in
 * 2 processes on SQLite and on Redis (required under IDEM_REQUIRE_SERVICES=1) bill once; a
 * process killed mid-call leaves its key with IndeterminateOutcomeError, never a second bill.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { ANSWER } from './ai-sdk-model.ts';
import { startServer, type TestServer } from './server.ts';

const CHILD = new URL('./fixtures/ai-sdk-child.ts', import.meta.url).pathname;
const PER_PROCESS = 5;

let server: TestServer;
let dir: string;
const redisUp = await serviceAvailable('redis');

beforeAll(async () => {
  server = await startServer();
  dir = mkdtempSync(join(tmpdir(), 'idem-ai-sdk-proc-'));
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => server.reset());

type Result = { text: string; replayed: boolean; error?: { name?: string } };

function startChild(args: object): { done: Promise<Result[]>; kill: () => void } {
  const child = spawn(process.execPath, ['--conditions=idem-source', CHILD, JSON.stringify(args)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  const done = new Promise<Result[]>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code ?? signal}`)),
    );
  });
  return { done, kill: () => child.kill('SIGKILL') };
}

const stores = [
  { name: 'sqlite', up: true, store: () => ({ kind: 'sqlite', path: join(dir, `${uniqueName()}.db`) }) },
  {
    name: 'redis',
    up: redisUp,
    store: () => ({ kind: 'redis', url: SERVICES.redis, prefix: uniqueName('idem_aisdk') }),
  },
];

describe.each(stores)('$name store: duplicates in 2 processes', ({ up, store }) => {
  it.skipIf(!up).each([
    ['responses', 'generate'],
    ['chat', 'stream'],
  ])('%s model, %s: billed once, every caller gets the one answer', async (api, call) => {
    server.set({ delayMs: 300 });
    const shared = {
      baseURL: server.url,
      api,
      call,
      store: store(),
      key: uniqueName('k'),
      count: PER_PROCESS,
      startAt: Date.now() + 1200,
    };
    const results = (await Promise.all([startChild(shared).done, startChild(shared).done])).flat();
    expect(results).toHaveLength(2 * PER_PROCESS);
    expect(new Set(results.map((r) => r.text))).toEqual(new Set([ANSWER]));
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(server.billed).toBe(1);
  });
});

it('a process killed mid-call: the next one with its key gets IndeterminateOutcomeError, billed once', async () => {
  server.set({ delayMs: 2500 });
  const args = {
    baseURL: server.url,
    api: 'responses',
    call: 'generate',
    store: stores[0]!.store(),
    key: 'killed',
    count: 1,
    startAt: 0,
    lease: '1s',
  };
  const holder = startChild(args);
  const rejected = holder.done.catch((e: Error) => e);
  while (server.requests === 0) await new Promise((r) => setTimeout(r, 20));
  holder.kill();
  expect(await rejected).toBeInstanceOf(Error);
  const [next] = await startChild(args).done;
  expect(next?.error).toEqual({ name: 'IndeterminateOutcomeError' });
  expect(server.billed).toBe(1);
});

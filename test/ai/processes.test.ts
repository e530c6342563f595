/**
 * ~100 concurrent duplicates of one LLM call over 3 processes, through withIdem with the real
 * SDKs, on SQLite, Redis and PostgreSQL: billed once. IDEM_REQUIRE_SERVICES=1 makes an
 * unreachable Redis or Postgres fail the suite instead of skipping it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { ANSWER } from './scenarios.ts';
import { startServer, type TestServer } from './server.ts';

const CHILD = new URL('./fixtures/llm-child.ts', import.meta.url).pathname;
const PROCESSES = 3;
const PER_PROCESS = 34;

let server: TestServer;
let dir: string;
const schema = uniqueName('idem_ai');
const [redisUp, pgUp] = await Promise.all([serviceAvailable('redis'), serviceAvailable('postgres')]);

beforeAll(async () => {
  server = await startServer();
  dir = mkdtempSync(join(tmpdir(), 'idem-ai-proc-'));
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
  if (pgUp) {
    const client = new pg.Client({ connectionString: SERVICES.postgres });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  }
});
beforeEach(() => server.reset());

type Result = { text: string; replayed: boolean; error?: { name?: string; status?: number; code?: string } };

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
const runChild = (args: object) => startChild(args).done;

const stores = [
  { name: 'sqlite', up: true, store: () => ({ kind: 'sqlite', path: join(dir, `${uniqueName()}.db`) }) },
  {
    name: 'redis',
    up: redisUp,
    store: () => ({ kind: 'redis', url: SERVICES.redis, prefix: uniqueName('idem_ai') }),
  },
  {
    name: 'postgres',
    up: pgUp,
    store: () => ({ kind: 'postgres', connectionString: SERVICES.postgres, schema }),
  },
];

describe.each(stores)('$name store: 102 duplicates over 3 processes', ({ up, store }) => {
  it.skipIf(!up).each(['openai', 'anthropic'])(
    '%s: billed once, every caller gets the one answer',
    async (sdk) => {
      server.set({ delayMs: 400 });
      const shared = {
        sdk,
        baseURL: server.url,
        store: store(),
        key: uniqueName('k'),
        count: PER_PROCESS,
        startAt: Date.now() + 1500,
      };
      const results = (await Promise.all(Array.from({ length: PROCESSES }, () => runChild(shared)))).flat();
      expect(results).toHaveLength(PROCESSES * PER_PROCESS);
      expect(new Set(results.map((r) => r.text))).toEqual(new Set([ANSWER]));
      expect(results.filter((r) => !r.replayed)).toHaveLength(1);
      expect(server.billed).toBe(1);
    },
  );
});

describe.each(['openai', 'anthropic'])('%s: processes that end (SQLite store)', (sdk) => {
  const args = (key: string, extra: object = {}) => ({
    sdk,
    baseURL: server.url,
    store: { kind: 'sqlite', path: join(dir, `${key}.db`) },
    key,
    count: 1,
    startAt: 0,
    lease: '1s',
    ...extra,
  });

  // on Postgres (a network round trip to store the outcome) the exit used to win the race
  it.skipIf(!pgUp)(
    'a caller that exits as soon as it has its answer leaves the outcome stored (Postgres): the next process replays it',
    async () => {
      const key = uniqueName('exit');
      const store = { kind: 'postgres', connectionString: SERVICES.postgres, schema };
      const [first] = await runChild(args(key, { exitAtOnce: true, store }));
      const [second] = await runChild(args(key, { store }));
      expect(first).toEqual({ text: ANSWER, replayed: false });
      expect(second).toEqual({ text: ANSWER, replayed: true });
      expect(server.billed).toBe(1);
    },
  );

  it('a holder killed mid-call: its key answers an indeterminate outcome, never a second bill', async () => {
    server.set({ delayMs: 2500 });
    const key = uniqueName('killed');
    const holder = startChild(args(key));
    const rejected = holder.done.catch((e: Error) => e);
    while (server.requests === 0) await new Promise((r) => setTimeout(r, 20));
    holder.kill();
    expect(await rejected).toBeInstanceOf(Error);
    const [next] = await runChild(args(key));
    expect(next?.error).toMatchObject(
      sdk === 'openai'
        ? { status: 502, code: 'indeterminate_outcome' }
        : { name: 'IndeterminateOutcomeError', status: 502 },
    );
    expect(server.billed).toBe(1);
  });
});

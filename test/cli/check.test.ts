/**
 * `idem check` against real servers: a deliberately non-idempotent payments endpoint must fail
 * (exit 1, the duplicate named); the same endpoint behind the gateway and behind each
 * middleware (Hono, Express, Fastify, withIdempotency) must pass, each on a real store.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { idempotency as expressIdempotency, idempotencyErrors } from 'idem/express';
import { idempotency as fastifyIdempotency } from 'idem/fastify';
import { idempotency as honoIdempotency } from 'idem/hono';
import { type IdempotencyOptions, withIdempotency } from 'idem/http';
import { postgresStore } from 'idem/postgres';
import { redisStore } from 'idem/redis';
import { sqliteStore } from 'idem/sqlite';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { type CheckReport, checkEndpoint } from '../../src/cli/check.ts';
import { formatCheck } from '../../src/cli/check-report.ts';
import { createGateway } from '../../src/gateway/index.ts';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';

const redisUp = await serviceAvailable('redis');
const pgUp = await serviceAvailable('postgres');
const ROOT = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'idem-check-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});
const quiet = { warn: () => {}, error: () => {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The non-idempotent operation: a new payment id on every execution, counted. */
function payments(delayMs = 60) {
  const counter = { executions: 0 };
  const run = async (body: string) => {
    const n = ++counter.executions;
    await sleep(delayMs);
    const amount = (JSON.parse(body || '{}') as { amount?: unknown }).amount ?? null;
    return {
      status: 201,
      body: JSON.stringify({ id: `pay_${n}_${randomBytes(3).toString('hex')}`, amount }),
    };
  };
  return { counter, run };
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise((r) => {
        server.close(r);
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A plain node:http server with no idempotency at all. */
async function rawEndpoint(
  run: (body: string) => Promise<{ status: number; body: string }>,
): Promise<string> {
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const answer = await run(Buffer.concat(chunks).toString('utf8'));
    res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
  });
  return `${await listen(server)}/payments`;
}

/** A fetch handler (Hono's app.fetch, withIdempotency) on node:http. */
async function serveFetch(handler: (request: Request) => Promise<Response>): Promise<string> {
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const headers = new Headers();
    for (let i = 0; i < req.rawHeaders.length; i += 2)
      headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    const response = await handler(
      new Request(`http://${req.headers.host}${req.url}`, { method: req.method!, headers, body }),
    );
    res.writeHead(response.status, [...response.headers].flat());
    res.end(Buffer.from(await response.arrayBuffer()));
  });
  return `${await listen(server)}/payments`;
}

const sqlite = () => sqliteStore({ path: join(dir, `${uniqueName('s')}.db`) });

/** Runs `idem check …` as users do (bin/idem.js, a child process). */
function idem(args: string[]) {
  const child = spawn(process.execPath, [join(ROOT, 'bin/idem.js'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

const verdicts = (report: CheckReport) => Object.fromEntries(report.rows.map((r) => [r.id, r.verdict]));

/** What a conformant endpoint with an optional key earns, and exactly 3 executions. */
function expectConformant(report: CheckReport, counter: { executions: number }) {
  const v = verdicts(report);
  expect(v, formatCheck(report)).toEqual({
    first: 'pass',
    replay: 'pass',
    concurrent: 'pass',
    'after-concurrent': 'pass',
    'changed-body': 'pass',
    'no-key': 'warn',
    'malformed-empty': 'pass',
    'malformed-list': 'pass',
    'malformed-control': 'pass',
    'malformed-syntax': 'pass',
    'malformed-too-long': 'pass',
  });
  expect(report).toMatchObject({
    result: 'idempotent',
    exitCode: 0,
    duplicateExecuted: false,
    problemJson: true,
  });
  // the first request, one of the ten duplicates, the request without a key: nothing else ran
  expect(counter.executions).toBe(3);
}

describe('a deliberately non-idempotent endpoint', () => {
  it('fails: every duplicate executed, named by its payment ids (in process)', async () => {
    const { counter, run } = payments();
    const url = await rawEndpoint(run);
    const report = await checkEndpoint(url, { concurrency: 5 });
    expect(report).toMatchObject({ result: 'duplicate-executed', exitCode: 1, duplicateExecuted: true });
    const byId = Object.fromEntries(report.rows.map((r) => [r.id, r]));
    expect(byId.replay).toMatchObject({ verdict: 'fail', duplicate: true, executions: 1 });
    expect(byId.replay!.note).toMatch(
      /DUPLICATE EXECUTED: a second execution \(id=pay_1_\w+, id=pay_2_\w+\)/,
    );
    expect(byId.concurrent).toMatchObject({ verdict: 'fail', duplicate: true, executions: 5 });
    expect(byId['after-concurrent']).toMatchObject({ verdict: 'fail', duplicate: true });
    expect(byId['changed-body']!.note).toMatch(/executed another body under a used key/);
    // 1 + 1 + 5 + 1 + changed body + no key + 5 malformed keys: all executed
    expect(counter.executions).toBe(15);
  });

  it('idem check exits 1 and names the duplicate; --json has the same verdict', async () => {
    const { run } = payments(20);
    const url = await rawEndpoint(run);
    const r = await idem(['check', url, '--concurrency', '3']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✗ fail\s+2\. same key again, after completion .*again: DUPLICATE/);
    expect(r.stdout).toMatch(/DUPLICATE EXECUTED: 3 executions for one key/);
    expect(r.stdout).toMatch(/result: NOT idempotent: a duplicate executed \(exit 1\)/);
    const j = await idem(['check', url, '--concurrency', '3', '--json']);
    expect(j.code).toBe(1);
    const report = JSON.parse(j.stdout) as CheckReport;
    expect(report).toMatchObject({
      schema: 'idem-check/1',
      result: 'duplicate-executed',
      duplicateExecuted: true,
    });
    expect(report.rows.map((r) => r.id)).toContain('concurrent');
  });
});

describe('the same endpoint made idempotent passes', () => {
  it('behind the gateway (SQLite store), through the real CLI: exit 0', async () => {
    const { counter, run } = payments();
    const upstream = (await rawEndpoint(run)).replace(/\/payments$/, '');
    const gateway = await createGateway({
      upstream,
      store: `sqlite:${join(dir, 'gateway.db')}`,
      purgeEvery: false,
      logger: quiet,
    });
    const url = `${await gateway.listen(0)}/payments`;
    cleanups.push(() => gateway.close());
    const r = await idem(['check', url, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectConformant(JSON.parse(r.stdout) as CheckReport, counter);
    const table = await idem(['check', url, '--concurrency', '4']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/✓ pass\s+3\. 4 at once with one fresh key .* 201 ×1, 201 replayed ×3\s+1×/);
    expect(table.stdout).toMatch(/result: idempotent \(exit 0\)/);
  });

  it('Hono middleware (SQLite store)', async () => {
    const { counter, run } = payments();
    const app = new Hono();
    app.use('*', honoIdempotency({ store: sqlite(), logger: quiet }));
    app.post('/payments', async (c) => {
      const a = await run(await c.req.text());
      return c.body(a.body, a.status as 201, { 'content-type': 'application/json' });
    });
    expectConformant(
      await checkEndpoint(await serveFetch((req) => Promise.resolve(app.fetch(req)))),
      counter,
    );
  });

  it('withIdempotency, the web/fetch adapter (SQLite store)', async () => {
    const { counter, run } = payments();
    const endpoint = withIdempotency(
      async (req: Request) => {
        const a = await run(await req.text());
        return new Response(a.body, { status: a.status, headers: { 'content-type': 'application/json' } });
      },
      { store: sqlite(), logger: quiet },
    );
    expectConformant(await checkEndpoint(await serveFetch(endpoint)), counter);
  });

  it.skipIf(!redisUp)(
    'Express middleware after express.json(), 409 to in-flight duplicates (Redis store)',
    async () => {
      const { counter, run } = payments(300);
      const prefix = uniqueName('idem_check');
      const client = new Redis(SERVICES.redis, { lazyConnect: true });
      await client.connect();
      cleanups.push(async () => {
        const keys = await client.keys(`${prefix}*`);
        if (keys.length) await client.del(...keys);
        await client.quit();
      });
      const options: IdempotencyOptions = {
        store: redisStore({ client, prefix }),
        logger: quiet,
        onInProgress: 'reject',
      };
      const app = express();
      app.use(express.json());
      app.use(expressIdempotency(options));
      app.post('/payments', async (req, res) => {
        const a = await run(JSON.stringify(req.body));
        res.status(a.status).type('application/json').send(a.body);
      });
      app.use(idempotencyErrors());
      const url = `${await listen(http.createServer(app))}/payments`;
      const report = await checkEndpoint(url, { concurrency: 6 });
      expectConformant(report, counter);
      const burst = report.rows.find((r) => r.id === 'concurrent')!;
      expect(burst.got).toMatch(/^201 ×1, 409 problem\+json ×5$/);
      expect((await client.keys(`${prefix}*`)).length).toBeGreaterThan(0);
    },
  );

  it.skipIf(!pgUp)('Fastify plugin (Postgres store)', async () => {
    const { counter, run } = payments();
    const schema = uniqueName('idem_check');
    const store = postgresStore({ connectionString: SERVICES.postgres, schema });
    cleanups.push(async () => {
      await store.close?.();
      const admin = new pg.Pool({ connectionString: SERVICES.postgres, max: 1 });
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    });
    const app = Fastify();
    await app.register(fastifyIdempotency({ store, logger: quiet }));
    app.post('/payments', async (req, reply) => {
      const a = await run(JSON.stringify(req.body));
      return reply.code(a.status).type('application/json').send(a.body);
    });
    const address = await app.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => app.close());
    expectConformant(await checkEndpoint(`${address}/payments`), counter);
  });
});

describe('what the check can and cannot tell', () => {
  it('identical bodies without ids are no proof: "cannot tell", and exit 3 for the failed rows', async () => {
    let executions = 0;
    const url = await rawEndpoint(async () => {
      executions++;
      return { status: 200, body: '{"ok":true}' };
    });
    const report = await checkEndpoint(url, { concurrency: 3 });
    expect(report).toMatchObject({ result: 'not-conformant', exitCode: 3, duplicateExecuted: null });
    const byId = Object.fromEntries(report.rows.map((r) => [r.id, r]));
    expect(byId.replay).toMatchObject({ verdict: 'warn', executions: null, duplicate: null });
    expect(byId.replay!.note).toMatch(/cannot tell whether it executed again/);
    expect(byId['changed-body']).toMatchObject({ verdict: 'fail', executions: null });
    expect(formatCheck(report)).toMatch(/duplicate executed: cannot tell/);
    expect(executions).toBe(13);
  });

  it('a 409 right after completion is retried after its Retry-After: a warn, not a fail', async () => {
    const seen = new Map<string, { answer: string; conflicts: number }>();
    let executions = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const key = req.headers['idempotency-key'] as string | undefined;
        const stored = key === undefined ? undefined : seen.get(key);
        if (stored && stored.conflicts++ === 0) {
          res.writeHead(409, { 'content-type': 'application/problem+json', 'retry-after': '1' });
          return res.end('{"type":"about:blank","title":"in progress"}');
        }
        if (stored) {
          res.writeHead(201, { 'content-type': 'application/json', 'idempotent-replayed': 'true' });
          return res.end(stored.answer);
        }
        const answer = JSON.stringify({ id: `p${++executions}` });
        if (key !== undefined) seen.set(key, { answer, conflicts: 0 });
        res.writeHead(201, { 'content-type': 'application/json' }).end(answer);
      });
    });
    const report = await checkEndpoint(`${await listen(server)}/payments`, { concurrency: 0 });
    const replay = report.rows.find((r) => r.id === 'replay')!;
    expect(replay).toMatchObject({ verdict: 'warn', statuses: [409, 201], duplicate: false });
    expect(replay.note).toBe(
      'answered 409 in progress right after the first response arrived; replayed after Retry-After: 1',
    );
    expect(replay.got).toBe('409 problem+json ×1, 201 replayed ×1');
    expect(report.rows.find((r) => r.id === 'concurrent')!.verdict).toBe('not-applicable');
  });

  it('a replay whose body changed but whose id did not is a warn (not executed again); a new id is the fail', async () => {
    const seen = new Map<string, string>();
    let n = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const key = req.headers['idempotency-key'] as string | undefined;
        const id = (key && seen.get(key)) ?? `p${++n}`;
        if (key) seen.set(key, id);
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id, at: process.hrtime.bigint().toString() }));
      });
    });
    const report = await checkEndpoint(`${await listen(server)}/payments`, { concurrency: 0 });
    const replay = report.rows.find((r) => r.id === 'replay')!;
    expect(replay).toMatchObject({ verdict: 'warn', duplicate: false, executions: 0 });
    expect(replay.note).toMatch(/the body differs from the first answer, but the same id/);
  });

  it('--id-field and --id-header find the execution where the body has no id field', async () => {
    let n = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        n++;
        res.writeHead(201, { 'content-type': 'application/json', location: `/payments/${n}` });
        res.end(JSON.stringify({ data: { payment: { ref: `r${n}` } } }));
      });
    });
    const url = `${await listen(server)}/payments`;
    for (const ids of [{ field: 'data.payment.ref' }, { header: 'location' }]) {
      const report = await checkEndpoint(url, { concurrency: 2, ids });
      expect(report.duplicateExecuted, JSON.stringify(ids)).toBe(true);
      expect(report.exitCode).toBe(1);
    }
    const r = await idem(['check', url, '--concurrency', '2', '--id-header', 'location']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/location=\/payments\/\d+, location=\/payments\/\d+/);
  });

  it('a 5xx to a malformed key is a fail, not a warn', async () => {
    const { run } = payments(5);
    const app = new Hono();
    app.use('*', async (c, next) => {
      if ((c.req.header('idempotency-key') ?? 'ok').length > 255) return c.text('boom', 500);
      return next();
    });
    app.use('*', honoIdempotency({ store: sqlite(), logger: quiet }));
    app.post('/payments', async (c) => {
      const a = await run(await c.req.text());
      return c.body(a.body, a.status as 201, { 'content-type': 'application/json' });
    });
    const report = await checkEndpoint(await serveFetch((req) => Promise.resolve(app.fetch(req))), {
      concurrency: 2,
    });
    expect(report.rows.find((r) => r.id === 'malformed-too-long')).toMatchObject({
      verdict: 'fail',
      statuses: [500],
    });
    expect(report).toMatchObject({ result: 'not-conformant', exitCode: 3, duplicateExecuted: false });
  });

  it('usage errors exit 2: a safe method, a --concurrency that is not a number', async () => {
    const get = await idem(['check', 'http://127.0.0.1:9/x', '--method', 'GET']);
    const zero = await checkEndpoint('http://127.0.0.1:9/x', { timeoutMs: 0 }).catch(
      (e: { exitCode: number }) => e,
    );
    expect(zero).toMatchObject({
      exitCode: 2,
      message: '--timeout must be a whole number of milliseconds, at least 1',
    });
    expect([get.code, get.stderr.trim()]).toEqual([
      2,
      'idem: --method must be one of POST, PUT, PATCH, DELETE (a key on GET is ignored)',
    ]);
    const bad = await idem(['check', 'http://127.0.0.1:9/x', '--concurrency', 'many']);
    expect(bad.code).toBe(2);
  });
});

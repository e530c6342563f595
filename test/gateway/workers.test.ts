/**
 * `idem serve --workers 3`: the duplicate storm (1,000 concurrent requests with one key over
 * the 3 worker processes, on SQLite and on Redis → one upstream call, one answer, waiters'
 * p99 within the upstream's latency + 50 ms), `/metrics` summed over the workers, a killed
 * worker restarted, SIGTERM draining every worker, and a bad config printed once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { startUpstream } from './helpers.ts';

const CLI = join(import.meta.dirname, '../../src/cli/index.ts');
const N = 1000;
const WORKERS = 3;
const UPSTREAM_MS = 300;
const ADMIN_TOKEN = 'workers-admin-token-0123456789';
const redisUp = await serviceAvailable('redis');

interface Serve {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** `idem serve …` in a child; resolves once it printed its URL. */
function serve(args: string[]): Promise<Serve> {
  const child = spawn(process.execPath, ['--conditions=idem-source', CLI, 'serve', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', () => {
      const m = /idem gateway (http:\/\/\S+)/.exec(out);
      if (m) resolve({ child, url: m[1] as string, output: () => out });
    });
    child.once('exit', (code) => reject(new Error(`idem serve exited with ${code}: ${out}`)));
  });
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', r)));

/** `n` kept-alive connections, each opened with a GET first so the storm measures only the request. */
async function connections(url: string, n: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: n });
  const get = () =>
    new Promise<void>((resolve, reject) => {
      http
        .get(`${url}/healthz`, { agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        })
        .on('error', reject);
    });
  await Promise.all(Array.from({ length: n }, get));
  return agent;
}

function post(agent: http.Agent, url: string, key: string, path = '/storm') {
  const started = performance.now();
  return new Promise<{ status: number; body: string; replayed: boolean; ms: number }>((resolve, reject) => {
    const req = http.request(
      `${url}${path}`,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'idempotency-key': key, authorization: 'Bearer t' },
      },
      (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            replayed: res.headers['idempotent-replayed'] === 'true',
            ms: performance.now() - started,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end('{"amount":1}');
  });
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
};

/** The sum of one metric's samples in a Prometheus text exposition. */
function metric(text: string, name: string, labels = ''): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .filter((l) => l.includes(labels))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

const backends = [
  { name: 'sqlite', up: true, spec: (dir: string, _unique: string) => `sqlite:${join(dir, 'gw.db')}` },
  {
    name: 'redis',
    up: redisUp,
    spec: (_dir: string, unique: string) => `${SERVICES.redis}?prefix=${unique}`,
  },
];

for (const backend of backends) {
  describe.skipIf(!backend.up)(`idem serve --workers ${WORKERS} on ${backend.name}`, () => {
    const unique = uniqueName('idem_workers');
    const dir = mkdtempSync(join(tmpdir(), 'idem-workers-'));
    let calls = 0;
    let upstream: Awaited<ReturnType<typeof startUpstream>>;
    let gw: Serve;

    beforeAll(async () => {
      upstream = await startUpstream((req, res) => {
        if (req.url === '/storm') calls++;
        req.resume();
        const id = randomBytes(8).toString('hex');
        setTimeout(() => {
          res.writeHead(201, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id }));
        }, UPSTREAM_MS);
      });
      upstream.server.keepAliveTimeout = 60_000; // the baseline's 1,000 connections stay open while all are made
      const config = join(dir, 'gateway.json');
      writeFileSync(config, JSON.stringify({ routes: [{ path: '/*', concurrency: 'wait' }] }));
      gw = await serve([
        '--upstream',
        upstream.url,
        '--store',
        backend.spec(dir, unique),
        '--port',
        '0',
        '--config',
        config,
        '--workers',
        String(WORKERS),
        '--admin-port',
        '0',
        '--admin-token',
        ADMIN_TOKEN,
      ]);
    }, 60_000);

    afterAll(async () => {
      if (gw && gw.child.exitCode === null) {
        gw.child.kill('SIGKILL');
        await exited(gw.child);
      }
      await upstream?.close();
      rmSync(dir, { recursive: true, force: true });
      if (backend.name === 'redis') {
        const client = new Redis(SERVICES.redis);
        const keys = await client.keys(`${unique}*`);
        if (keys.length) await client.del(...keys);
        await client.quit();
      }
    });

    it(`${N} concurrent requests with one key: one upstream call, one answer, waiters' p99 ≤ upstream + 50 ms`, async () => {
      // what 1,000 concurrent requests cost this machine without the gateway (it is shared and noisy)
      const direct = await connections(upstream.url, N);
      let directP99: number;
      try {
        const ms = (
          await Promise.all(Array.from({ length: N }, () => post(direct, upstream.url, 'x', '/direct')))
        ).map((r) => r.ms);
        directP99 = percentile(ms, 99);
      } finally {
        direct.destroy();
      }
      const agent = await connections(gw.url, N);
      try {
        // warm-up (a cold process compiles as it goes): 100 keys, then a small storm
        await Promise.all(
          Array.from({ length: 100 }, (_, i) => post(agent, gw.url, `warm-${i}-${unique}`, '/warm')),
        );
        await Promise.all(Array.from({ length: 100 }, () => post(agent, gw.url, `warm-${unique}`, '/warm')));
        const replies = await Promise.all(
          Array.from({ length: N }, () => post(agent, gw.url, `storm-${unique}`)),
        );
        expect(calls).toBe(1);
        expect(new Set(replies.map((r) => r.status))).toEqual(new Set([201]));
        expect(new Set(replies.map((r) => r.body)).size).toBe(1);
        expect(replies.filter((r) => !r.replayed)).toHaveLength(1);
        const waiters = replies.filter((r) => r.replayed).map((r) => r.ms);
        const p50 = percentile(waiters, 50);
        const p99 = percentile(waiters, 99);
        console.log(
          `${backend.name}: ${N} requests, upstream ${UPSTREAM_MS} ms: waiters p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, max ${Math.max(...waiters).toFixed(0)} ms; the upstream called directly by ${N} at once: p99 ${directP99.toFixed(0)} ms`,
        );
        // The target is p99 ≤ upstream + 50 ms (the bench's duplicate storm reports it). On a
        // loaded machine 1,000 concurrent requests cost more than that even without the gateway,
        // so here what the machine adds (the direct p99 over the upstream's latency) is allowed
        // three times: waiters queued behind one another or woken by slow polls still fail it.
        expect(p99 - UPSTREAM_MS).toBeLessThanOrEqual(50 + 3 * Math.max(0, directP99 - UPSTREAM_MS));

        // /metrics answers for all workers: every storm request is counted once, whichever worker
        // served it (with an admin token set, /metrics needs the token)
        const bearer = { authorization: `Bearer ${ADMIN_TOKEN}` };
        expect((await fetch(`${gw.url}/metrics`)).status).toBe(401);
        const text = await (await fetch(`${gw.url}/metrics`, { headers: bearer })).text();
        expect(metric(text, 'idem_gateway_requests_total', 'route="/*"')).toBe(N + 200);
        expect(metric(text, 'idem_claims_total')).toBe(1 + 101);

        // the dashboard's listener runs in the primary, over every worker's data
        const adminUrl = /idem dashboard (http:\/\/\S+)\//.exec(gw.output())?.[1] ?? '';
        expect(adminUrl).toMatch(/^http:/);
        expect((await fetch(`${adminUrl}/api/keys`)).status).toBe(401);
        const adminText = await (await fetch(`${adminUrl}/metrics`, { headers: bearer })).text();
        expect(metric(adminText, 'idem_gateway_requests_total', 'route="/*"')).toBe(N + 200);
        const recent = (await (
          await fetch(`${adminUrl}/api/keys?limit=500`, { headers: bearer })
        ).json()) as {
          keys: { pid: number; recordId: string }[];
        };
        expect(recent.keys.length).toBeGreaterThanOrEqual(101);
        expect(new Set(recent.keys.map((k) => k.pid)).size).toBeGreaterThan(1); // more than one worker's keys
        const found = (await (
          await fetch(`${adminUrl}/api/keys/find`, {
            method: 'POST',
            headers: { ...bearer, 'content-type': 'application/json' },
            body: JSON.stringify({ key: `storm-${unique}` }),
          })
        ).json()) as { keys: { recordId: string }[] };
        expect(found.keys.length).toBeGreaterThan(0);
        expect(new Set(found.keys.map((k) => k.recordId)).size).toBe(1);
      } finally {
        agent.destroy();
      }
    }, 90_000);

    it.skipIf(backend.name !== 'sqlite')(
      'a worker that dies is restarted; SIGTERM drains every worker and exits 0',
      async () => {
        const pids = async () => {
          const headers = { authorization: `Bearer ${ADMIN_TOKEN}` };
          const text = await (await fetch(`${gw.url}/metrics`, { headers })).text();
          return text.match(/^process_cpu_seconds_total/m) ? text : '';
        };
        expect(await pids()).not.toBe('');
        // the worker pids: children of the primary
        const { execFileSync } = await import('node:child_process');
        const children = () =>
          execFileSync('ps', ['--ppid', String(gw.child.pid), '-o', 'pid='], { encoding: 'utf8' })
            .split('\n')
            .map((s) => Number(s.trim()))
            .filter(Boolean);
        const before = children();
        expect(before).toHaveLength(WORKERS);
        process.kill(before[0] as number, 'SIGKILL');
        for (let i = 0; i < 200 && !/exited unexpectedly/.test(gw.output()); i++) await sleep(50);
        expect(gw.output()).toMatch(
          new RegExp(`gateway worker ${before[0]} exited unexpectedly \\(SIGKILL\\)`),
        );
        for (let i = 0; i < 600; i++) {
          const now = children();
          if (now.length === WORKERS && !now.includes(before[0] as number)) break;
          await sleep(50);
        }
        const after = children();
        expect(after).toHaveLength(WORKERS);
        expect(after).not.toContain(before[0]);
        // the new worker serves: a fresh key goes through
        const agent = new http.Agent({ keepAlive: false });
        const r = await post(agent, gw.url, `after-restart-${unique}`);
        expect(r.status).toBe(201);

        gw.child.kill('SIGTERM');
        expect(await exited(gw.child)).toBe(0);
        for (const pid of after) expect(alive(pid)).toBe(false);
        expect(gw.output().match(/idem gateway http/g)).toHaveLength(1);
      },
      90_000,
    );
  });
}

describe('idem serve --workers: start-up failures', () => {
  it('a bad config is printed once and exits 2, without restarting', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'idem-workers-'));
    const config = join(dir, 'gateway.json');
    writeFileSync(config, JSON.stringify({ routes: [{ path: '/x', concurrency: 'sometimes' }] }));
    const child = spawn(
      process.execPath,
      [
        '--conditions=idem-source',
        CLI,
        'serve',
        '--upstream',
        'http://127.0.0.1:9',
        '--store',
        `sqlite:${join(dir, 'g.db')}`,
        '--port',
        '0',
        '--config',
        config,
        '--workers',
        '3',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr?.on('data', (d) => (out += d));
    expect(await exited(child)).toBe(2);
    rmSync(dir, { recursive: true, force: true });
    expect(out.match(/concurrency/g)).toHaveLength(1);
    expect(out).not.toMatch(/restart|exited unexpectedly|idem gateway http/);
  }, 30_000);

  it('--workers 0 and a non-integer "workers" in the config are usage errors', async () => {
    const run = async (args: string[]) => {
      const child = spawn(
        process.execPath,
        ['--conditions=idem-source', CLI, 'serve', '--upstream', 'http://127.0.0.1:9', ...args],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let err = '';
      child.stderr?.on('data', (d) => (err += d));
      return { code: await exited(child), err };
    };
    const zero = await run(['--workers', '0']);
    expect(zero.code).toBe(2);
    expect(zero.err).toMatch(/number of workers/);
    const dir = mkdtempSync(join(tmpdir(), 'idem-workers-'));
    writeFileSync(join(dir, 'c.json'), JSON.stringify({ workers: 'many' }));
    const bad = await run(['--config', join(dir, 'c.json')]);
    rmSync(dir, { recursive: true, force: true });
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/"workers" in --config must be an integer/);
    // a memory store is per process: several workers would each run a duplicate sent to them
    const memory = await run(['--store', 'memory', '--workers', '2']);
    expect(memory.code).toBe(2);
    expect(memory.err).toMatch(/--store memory keeps keys in one process, so 2 workers/);
  }, 30_000);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

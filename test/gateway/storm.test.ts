/**
 * The multi-instance storm: 200 concurrent requests with one key, spread over 3 gateway
 * PROCESSES (`idem serve`) that share one store (Postgres, then Redis). The upstream must
 * execute exactly once; with wait and attach every client gets the identical body; with
 * reject every client gets the body or a 409.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { type Reply, request, startUpstream } from './helpers.ts';

const CLI = join(import.meta.dirname, '../../src/cli/index.ts');
const N = 200;
const INSTANCES = 3;
const pgUp = await serviceAvailable('postgres');
const redisUp = await serviceAvailable('redis');

const backends = [
  {
    name: 'postgres',
    up: pgUp,
    spec: (unique: string) => `${SERVICES.postgres}?schema=${unique}`,
    async cleanup(unique: string) {
      // pg runs in a child: inside vitest `pg`'s CommonJS require of pg-pool currently breaks
      await node(
        `import pg from 'pg'; const pool = new pg.Pool({ connectionString: ${JSON.stringify(SERVICES.postgres)}, max: 1 });` +
          `await pool.query('DROP SCHEMA IF EXISTS "${unique}" CASCADE'); await pool.end();`,
      );
    },
  },
  {
    name: 'redis',
    up: redisUp,
    spec: (unique: string) => `${SERVICES.redis}?prefix=${unique}`,
    async cleanup(unique: string) {
      const client = new Redis(SERVICES.redis);
      let cursor = '0';
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', `${unique}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await client.del(...keys);
      } while (cursor !== '0');
      await client.quit();
    },
  },
];

for (const backend of backends) {
  describe.skipIf(!backend.up)(
    `storm: ${N} requests, one key, ${INSTANCES} gateway processes on ${backend.name}`,
    () => {
      const unique = uniqueName('idem_gw');
      const executions = new Map<string, number>();
      let upstream: Awaited<ReturnType<typeof startUpstream>>;
      let children: ChildProcess[] = [];
      let urls: string[] = [];

      beforeAll(async () => {
        upstream = await startUpstream((req, res) => {
          const path = new URL(req.url ?? '/', 'http://x').pathname;
          executions.set(path, (executions.get(path) ?? 0) + 1);
          req.resume();
          const id = randomBytes(8).toString('hex');
          res.writeHead(201, { 'content-type': 'text/event-stream' });
          let i = 0;
          const timer = setInterval(() => {
            res.write(`id: ${i}\ndata: {"run":"${id}","n":${i}}\n\n`);
            if (++i === 8) {
              clearInterval(timer);
              res.end('data: [DONE]\n\n');
            }
          }, 50);
        });
        const dir = mkdtempSync(join(tmpdir(), 'idem-storm-'));
        const config = join(dir, 'gateway.json');
        writeFileSync(
          config,
          JSON.stringify({
            connections: 64,
            routes: [
              { path: '/wait', concurrency: 'wait', waitTimeout: '30s' },
              { path: '/attach', concurrency: 'attach', waitTimeout: '30s' },
              { path: '/reject', concurrency: 'reject' },
            ],
          }),
        );
        const spec = backend.spec(unique);
        children = Array.from({ length: INSTANCES }, () =>
          spawn(
            process.execPath,
            [
              '--conditions=idem-source',
              CLI,
              'serve',
              '--upstream',
              upstream.url,
              '--store',
              spec,
              '--port',
              '0',
              '--config',
              config,
              '--workers', // one process each: 3 instances, as the test says (test/gateway/workers.test.ts covers workers)
              '1',
            ],
            { stdio: ['ignore', 'pipe', 'inherit'] },
          ),
        );
        urls = await Promise.all(children.map(listening));
      });

      afterAll(async () => {
        await Promise.all(
          children.map((c) => {
            c.kill('SIGTERM');
            return new Promise((r) => (c.exitCode === null ? c.once('exit', r) : r(null)));
          }),
        );
        await upstream?.close();
        await backend.cleanup(unique);
      });

      const storm = (path: string, key: string) =>
        Promise.all(
          Array.from({ length: N }, (_, i) =>
            request(urls[i % INSTANCES] as string, {
              path,
              headers: { 'content-type': 'application/json', 'idempotency-key': key },
              body: '{"prompt":"same"}',
            }),
          ),
        );

      for (const mode of ['wait', 'attach'] as const) {
        it(`${mode}: the upstream runs once and all ${N} clients get the identical body`, async () => {
          const replies = await storm(`/${mode}`, `storm-${mode}-${unique}`);
          expect(executions.get(`/${mode}`)).toBe(1);
          const statuses = new Set(replies.map((r) => r.status));
          expect([...statuses]).toEqual([201]);
          const first = replies[0] as Reply;
          expect(first.text).toMatch(/^id: 0\n/);
          expect(first.text.endsWith('data: [DONE]\n\n')).toBe(true);
          for (const r of replies) expect(r.body.equals(first.body)).toBe(true);
          expect(replies.filter((r) => r.headers['idempotent-replayed'] !== 'true')).toHaveLength(1);
        });
      }

      it(`reject: the upstream runs once; one success, the rest 409 or the identical replay`, async () => {
        const replies = await storm('/reject', `storm-reject-${unique}`);
        expect(executions.get('/reject')).toBe(1);
        const ok = replies.filter((r) => r.status === 201);
        const conflicts = replies.filter((r) => r.status === 409);
        expect(ok.length + conflicts.length).toBe(N);
        expect(ok.filter((r) => r.headers['idempotent-replayed'] !== 'true')).toHaveLength(1);
        for (const r of ok) expect(r.body.equals((ok[0] as Reply).body)).toBe(true);
        for (const r of conflicts) expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
        expect(conflicts.length).toBeGreaterThan(0);
      });
    },
  );
}

function node(code: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: 'inherit' });
    child.once('exit', (c) => (c === 0 ? resolve() : reject(new Error(`cleanup exited with ${c}`))));
  });
}

function listening(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d) => {
      out += d;
      const m = /idem gateway (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1] as string);
    });
    child.once('exit', (code) => reject(new Error(`idem serve exited with ${code}: ${out}`)));
  });
}

import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { createIdem, memoryStore } from 'idem';
import { idempotency, idempotencyErrors } from 'idem/express';
import { afterEach, describe, expect, it } from 'vitest';
import { noise } from './suite.ts';

const servers: ReturnType<express.Express['listen']>[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function serve(app: express.Express): Promise<string> {
  const server = app.listen(0);
  servers.push(server);
  await new Promise((r) => server.once('listening', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const keyed = (key: string, body?: string, type = 'application/json'): RequestInit => ({
  method: 'POST',
  headers: { 'idempotency-key': key, 'content-type': type },
  ...(body !== undefined && { body }),
});

describe('express specifics', () => {
  it('captures res.json, res.send(Buffer), res.write streams, writeHead objects and sendFile', async () => {
    const file = join(tmpdir(), `idem-express-${process.pid}.bin`);
    writeFileSync(file, noise(20_000, 7));
    let calls = 0;
    const app = express();
    const mw = idempotency({ idem: createIdem({ store: memoryStore() }) });
    app.post('/json', mw, (_req, res) => {
      calls++;
      res.status(201).json({ calls });
    });
    app.post('/buffer', mw, (_req, res) => {
      calls++;
      res.type('application/octet-stream').send(Buffer.from(noise(5000, calls)));
    });
    app.post('/stream', mw, (_req, res) => {
      calls++;
      res.writeHead(202, { 'content-type': 'text/plain', etag: '"s"' });
      res.write('a');
      res.write(Buffer.from('b'), () => {
        res.end('c', 'utf8');
      });
    });
    app.post('/file', mw, (_req, res) => {
      calls++;
      res.sendFile(file);
    });
    const base = await serve(app);
    for (const path of ['/json', '/buffer', '/stream', '/file']) {
      const before = calls;
      const a = await fetch(base + path, keyed(`k${path}`, '{}'));
      const b = await fetch(base + path, keyed(`k${path}`, '{}'));
      const [ab, bb] = [Buffer.from(await a.arrayBuffer()), Buffer.from(await b.arrayBuffer())];
      expect(calls - before, path).toBe(1);
      expect(b.status, path).toBe(a.status);
      expect(bb.equals(ab), path).toBe(true);
      expect(b.headers.get('idempotent-replayed'), path).toBe('true');
      expect(b.headers.get('content-type'), path).toBe(a.headers.get('content-type'));
    }
    const s = await fetch(`${base}/stream`, keyed('k/stream', '{}'));
    expect([s.status, await s.text(), s.headers.get('etag')]).toEqual([202, 'abc', '"s"']);
  });

  it('without a body parser, reads the body itself and exposes req.body and req.rawBody', async () => {
    const seen: unknown[] = [];
    const app = express();
    app.use(idempotency({ idem: createIdem({ store: memoryStore() }) }));
    app.post('/x', (req, res) => {
      const r = req as express.Request & { rawBody?: Buffer };
      seen.push([req.body, r.rawBody?.toString()]);
      res.status(201).end();
    });
    const base = await serve(app);
    await fetch(`${base}/x`, keyed('j', '{"a":[1,2]}'));
    await fetch(`${base}/x`, keyed('f', 'a=1&b=two&a=3', 'application/x-www-form-urlencoded'));
    await fetch(`${base}/x`, keyed('t', 'plain text', 'text/plain'));
    expect(seen).toEqual([
      [{ a: [1, 2] }, '{"a":[1,2]}'],
      [{ a: ['1', '3'], b: 'two' }, 'a=1&b=two&a=3'],
      ['plain text', 'plain text'],
    ]);
  });

  it('a client that retries the moment the whole body arrived finds the outcome stored, even with Content-Length (res.json)', async () => {
    // A slow store: complete() answers 300 ms late. Before the fix the body went out whole
    // (its Content-Length told the client it was done) while the outcome was still being
    // stored, and a retry at that moment got 409 in-progress.
    const inner = memoryStore();
    const store = {
      ...inner,
      complete: async (...args: Parameters<typeof inner.complete>) => {
        await new Promise((r) => setTimeout(r, 300));
        return inner.complete(...args);
      },
    };
    let calls = 0;
    const app = express();
    app.post('/x', idempotency({ idem: createIdem({ store }), onInProgress: 'reject' }), (_req, res) => {
      calls++;
      res.status(201).json({ id: `pay_${calls}` });
    });
    const url = await serve(app);
    const first = await fetch(`${url}/x`, keyed('at-once', '{"a":1}'));
    expect(first.headers.get('content-length')).not.toBeNull();
    expect(await first.json()).toEqual({ id: 'pay_1' });
    const again = await fetch(`${url}/x`, keyed('at-once', '{"a":1}'));
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual({ id: 'pay_1' });
    expect(calls).toBe(1);
  });

  it('the same JSON request fingerprints the same with or without express.json() in front', async () => {
    const store = memoryStore();
    const idem = createIdem({ store });
    let calls = 0;
    const handler: express.RequestHandler = (_req, res) => {
      calls++;
      res.status(201).json({ calls });
    };
    const parsed = express();
    parsed.use(express.json());
    parsed.post('/x', idempotency({ idem }), handler);
    const raw = express();
    raw.post('/x', idempotency({ idem }), handler);
    const [a, b] = [await serve(parsed), await serve(raw)];
    await fetch(`${a}/x`, keyed('same', '{"b":2,"a":1}'));
    const again = await fetch(`${b}/x`, keyed('same', '{ "a": 1, "b": 2 }'));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(calls).toBe(1);
  });

  it('without idempotencyErrors(), a thrown handler error is stored as the 500 Express wrote', async () => {
    let calls = 0;
    const app = express();
    app.post('/x', idempotency({ idem: createIdem({ store: memoryStore() }) }), () => {
      calls++;
      throw new Error('boom');
    });
    app.use((_e: Error, _q: express.Request, res: express.Response, _n: express.NextFunction) => {
      res.status(500).send('failed');
    });
    const base = await serve(app);
    await fetch(`${base}/x`, keyed('k', '{}'));
    const again = await fetch(`${base}/x`, keyed('k', '{}'));
    expect([again.status, again.headers.get('idempotent-replayed'), calls]).toEqual([500, 'true', 1]);
  });

  it('with idempotencyErrors(), the error handler response is sent and the key released', async () => {
    let calls = 0;
    const app = express();
    app.post('/x', idempotency({ idem: createIdem({ store: memoryStore() }) }), async (_req, res) => {
      if (++calls === 1) throw new Error('boom');
      res.status(201).send('ok');
    });
    app.use(idempotencyErrors());
    app.use((e: Error, _q: express.Request, res: express.Response, _n: express.NextFunction) => {
      res.status(503).set('x-error', e.message).send('try later');
    });
    const base = await serve(app);
    const first = await fetch(`${base}/x`, keyed('k', '{}'));
    expect([first.status, first.headers.get('x-error'), await first.text()]).toEqual([
      503,
      'boom',
      'try later',
    ]);
    const second = await fetch(`${base}/x`, keyed('k', '{}'));
    expect([second.status, await second.text(), calls]).toEqual([201, 'ok', 2]);
  });

  it('413 reaches a client that is still sending a large body (no connection reset)', async () => {
    const app = express();
    app.post(
      '/x',
      idempotency({ idem: createIdem({ store: memoryStore() }), bodyLimit: 1024 }),
      (_q, res) => {
        res.end('never');
      },
    );
    const base = new URL(await serve(app));
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: base.hostname,
          port: base.port,
          path: '/x',
          method: 'POST',
          headers: { 'idempotency-key': 'k', 'transfer-encoding': 'chunked' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 64; i++) req.write(Buffer.alloc(16 * 1024, 1));
      req.end();
    });
    expect(status).toBe(413);
  });

  it('earlier middleware headers (CORS) stay on replays and problems', async () => {
    const app = express();
    app.use((_q, res, next) => {
      res.set('access-control-allow-origin', '*');
      next();
    });
    app.post(
      '/x',
      idempotency({ idem: createIdem({ store: memoryStore() }) }),
      (_q, res) => void res.status(201).send('ok'),
    );
    const base = await serve(app);
    await fetch(`${base}/x`, keyed('k', '{}'));
    const replay = await fetch(`${base}/x`, keyed('k', '{}'));
    const problem = await fetch(`${base}/x`, keyed('k', '{"other":1}'));
    expect(replay.headers.get('access-control-allow-origin')).toBe('*');
    expect(problem.status).toBe(422);
    expect(problem.headers.get('access-control-allow-origin')).toBe('*');
  });
});

describe('express streaming', () => {
  it('an SSE response reaches the client event by event, then replays whole', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const app = express();
    app.post('/sse', idempotency({ idem: createIdem({ store: memoryStore() }) }), async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: 1\n\n');
      await gate;
      res.end('data: 2\n\n');
    });
    const base = await serve(app);
    const res = await fetch(`${base}/sse`, keyed('sse', '{}'));
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: 1\n\n');
    open();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read())
      rest += new TextDecoder().decode(r.value);
    expect(rest).toBe('data: 2\n\n');
    const replay = await fetch(`${base}/sse`, keyed('sse', '{}'));
    expect(await replay.text()).toBe('data: 1\n\ndata: 2\n\n');
  });
});

describe('express: no unhandled rejection on any path', () => {
  it('a handler error plus a logger that throws never rejects unhandled (forked probe)', async () => {
    const { spawn } = await import('node:child_process');
    const { createRequire } = await import('node:module');
    const { fileURLToPath } = await import('node:url');
    const require = createRequire(import.meta.url);
    const child = spawn(process.execPath, ['--input-type=module', '-e', PROBE_SCRIPT], {
      env: {
        ...process.env,
        PROBE_EXPRESS: require.resolve('express'),
        PROBE_IDEM: fileURLToPath(new URL('../../src/index.ts', import.meta.url)),
        PROBE_IDEM_EXPRESS: fileURLToPath(new URL('../../src/http/express/index.ts', import.meta.url)),
      },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.on('data', (d) => (stderr += d));
    const report = await new Promise<{ statuses: unknown[]; rejections: string[] }>((resolve, reject) => {
      child.once('message', (m) => resolve(m as { statuses: unknown[]; rejections: string[] }));
      child.once('exit', (code) => reject(new Error(`probe exited ${code}: ${stderr}`)));
    });
    child.kill();
    expect(report.rejections).toEqual([]);
    // every request got an answer (none hung): the error handler's 500; the cut stream's headers
    expect(report.statuses).toEqual([500, 200]);
  }, 20_000);
});

/** Runs in a forked Node: counts unhandled rejections while the adapter's catch paths fail. */
const PROBE_SCRIPT = `
const { default: express } = await import(process.env.PROBE_EXPRESS);
const { createIdem, memoryStore } = await import(process.env.PROBE_IDEM);
const { idempotency, idempotencyErrors } = await import(process.env.PROBE_IDEM_EXPRESS);
const rejections = [];
process.on('unhandledRejection', (e) => rejections.push(String(e && e.message || e)));
const logger = { warn() {}, error() { throw new Error('logger down'); } };
const idem = createIdem({ store: memoryStore() });
const app = express();
app.post('/problem', idempotency({ idem, logger, handlerErrors: 'problem' }), () => { throw new Error('boom'); });
app.post('/rethrow', idempotency({ idem, logger }), (_q, res) => {
  res.write('partial');
  setTimeout(() => res.destroy(new Error('cut')), 20);
});
app.use(idempotencyErrors());
const server = app.listen(0, '127.0.0.1', async () => {
  const base = 'http://127.0.0.1:' + server.address().port;
  const post = (path) => fetch(base + path, {
    method: 'POST', headers: { 'idempotency-key': 'k' + path, 'content-type': 'application/json' }, body: '{}',
    signal: AbortSignal.timeout(3000),
  }).then(async (r) => { await r.arrayBuffer().catch(() => {}); return r.status; }, (e) => e.name);
  const statuses = [await post('/problem'), await post('/rethrow')];
  await new Promise((r) => setTimeout(r, 300));
  process.send({ statuses, rejections }, () => process.exit(0));
});
`;

describe('express: body-parser errors', () => {
  it("the documented setup keeps express.json()'s own 413 a 413 (problem+json)", async () => {
    let calls = 0;
    const app = express();
    app.use(express.json());
    app.post('/payments', idempotency({ idem: createIdem({ store: memoryStore() }) }), (_q, res) => {
      calls++;
      res.status(201).json({ ok: true });
    });
    app.use(idempotencyErrors());
    app.use((_e: Error, _q: express.Request, res: express.Response, _n: express.NextFunction) => {
      res.status(500).json({ error: 'internal' });
    });
    const base = await serve(app);
    const big = JSON.stringify({ pad: 'x'.repeat(200_000) });
    const res = await fetch(`${base}/payments`, keyed('big', big));
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect((await res.json()) as Record<string, unknown>).toMatchObject({ status: 413 });
    const ok = await fetch(`${base}/payments`, keyed('small', '{"a":1}'));
    expect([ok.status, calls]).toEqual([201, 1]);
  });
});

describe('express: a stalled client does not hold the key', () => {
  it('the outcome is stored when the handler finishes, whatever the client reads', async () => {
    const size = 12 * 1024 * 1024; // far more than the loopback socket buffers hold
    const body = Buffer.from(noise(size, 3));
    let calls = 0;
    let finished!: () => void;
    const handlerDone = new Promise<void>((r) => (finished = r));
    const app = express();
    const idem = createIdem({ store: memoryStore(), maxOutcomeBytes: 64 * 1024 * 1024 });
    const mw = idempotency({ idem, maxStoredBodyBytes: 32 * 1024 * 1024 });
    app.post('/big', mw, async (_q, res) => {
      calls++;
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let i = 0; i < size; i += 256 * 1024) {
        // a well-behaved writer: waits for 'drain' when write() says so
        if (!res.write(body.subarray(i, i + 256 * 1024))) await new Promise((r) => res.once('drain', r));
      }
      res.end();
      finished();
    });
    const base = new URL(await serve(app));
    // The stalled client: opens the response and reads nothing.
    const stalled = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = httpRequest(
        {
          host: base.hostname,
          port: base.port,
          path: '/big',
          method: 'POST',
          headers: { 'idempotency-key': 'stall', 'content-type': 'application/json' },
        },
        resolve,
      );
      req.on('error', reject);
      req.end('{}');
    });
    stalled.pause();
    stalled.socket.pause();
    const timeout = (ms: number) => new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref());
    expect(await Promise.race([handlerDone.then(() => 'done' as const), timeout(3000)])).toBe('done');
    // Retries come at once and for at most two seconds (409 while the outcome is being stored).
    const retry = () =>
      fetch(`${base.origin}/big`, { ...keyed('stall', '{}'), signal: AbortSignal.timeout(2000) });
    let replay = await retry();
    for (const until = Date.now() + 2000; replay.status === 409 && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 50));
      replay = await retry();
    }
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(Buffer.from(await replay.arrayBuffer()).equals(body)).toBe(true);
    // The stalled client resumes and still gets every byte.
    const chunks: Buffer[] = [];
    stalled.on('data', (c: Buffer) => chunks.push(c));
    stalled.socket.resume();
    stalled.resume();
    await new Promise((r) => stalled.once('end', r));
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
    expect(calls).toBe(1);
  }, 30_000);
});

describe('express: backpressure past the stored-body limit', () => {
  it('res.write returns false while a stalled client holds more than the limit, and drains on resume', async () => {
    const size = 12 * 1024 * 1024;
    const body = Buffer.from(noise(size, 5));
    let refused = 0;
    let finished = false;
    const app = express();
    const mw = idempotency({ idem: createIdem({ store: memoryStore() }), maxStoredBodyBytes: 1024 * 1024 });
    app.post('/big', mw, async (_q, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let i = 0; i < size; i += 64 * 1024) {
        if (!res.write(body.subarray(i, i + 64 * 1024))) {
          refused++;
          await new Promise((r) => res.once('drain', r));
        }
      }
      res.end();
      finished = true;
    });
    const base = new URL(await serve(app));
    const stalled = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = httpRequest(
        {
          host: base.hostname,
          port: base.port,
          path: '/big',
          method: 'POST',
          headers: { 'idempotency-key': 'bp', 'content-type': 'application/json' },
        },
        resolve,
      );
      req.on('error', reject);
      req.end('{}');
    });
    stalled.pause();
    stalled.socket.pause();
    await new Promise((r) => setTimeout(r, 1000));
    expect(refused).toBeGreaterThan(0);
    expect(finished).toBe(false); // the handler waits for the client instead of idem buffering 12 MiB
    const chunks: Buffer[] = [];
    stalled.on('data', (c: Buffer) => chunks.push(c));
    stalled.socket.resume();
    stalled.resume();
    await new Promise((r) => stalled.once('end', r));
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
    expect(finished).toBe(true);
    const replay = await fetch(`${base.origin}/big`, keyed('bp', '{}'));
    expect([replay.status, replay.headers.get('idempotency-replay')]).toEqual([200, 'body-omitted']);
  }, 30_000);
});

describe('express: request targets new URL() refuses', () => {
  it('"//[x/…", "//a:99999/…" get a 400 invalid-target problem; a garbage Host runs under the key like any path (no 500)', async () => {
    const { sendRaw } = await import('../fuzz/wire.ts');
    let calls = 0;
    const app = express();
    app.use(idempotency({ idem: createIdem({ store: memoryStore() }) }));
    app.use((_q, res) => {
      calls++;
      res.status(201).json({ calls });
    });
    const port = Number(new URL(await serve(app)).port);
    const raw = (target: string, host: string) =>
      Buffer.from(
        `POST ${target} HTTP/1.1\r\nHost: ${host}\r\nIdempotency-Key: k-${target}\r\n` +
          'Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
      );
    for (const [target, host] of [
      ['//[x/payments', '127.0.0.1'],
      ['//a:99999/p', '127.0.0.1'],
      ['//', '127.0.0.1'],
      ['/p', 'a:99999'],
    ]) {
      const before = calls;
      const first = await sendRaw(port, raw(target as string, host as string), { timeoutMs: 3000 });
      const again = await sendRaw(port, raw(target as string, host as string), { timeoutMs: 3000 });
      const status = (r: typeof first) => (r.kind === 'response' ? r.status : r.kind);
      if ((target as string).startsWith('//')) {
        // a path starting with "//" reads as a host to URL parsers: refused before anything runs
        expect([status(first), status(again)], target).toEqual([400, 400]);
        const type = first.kind === 'response' ? JSON.parse(first.body.toString()).type : '';
        expect(type, target).toMatch(/invalid-target$/);
        expect(calls - before, target).toBe(0);
        continue;
      }
      expect([status(first), status(again)], target).toEqual([201, 201]);
      expect(again.kind === 'response' && again.headers.get('idempotent-replayed')?.[0], target).toBe('true');
      expect(calls - before, target).toBe(1);
    }
  });
});

describe('express: a 413 survives a client that keeps sending', () => {
  it('a client sending 6 MiB in pieces with Connection: close still reads the 413 (no reset)', async () => {
    const { sendRaw } = await import('../fuzz/wire.ts');
    const app = express();
    app.use(idempotency({ idem: createIdem({ store: memoryStore() }), bodyLimit: 64 * 1024 }));
    app.use((_q, res) => void res.status(201).end());
    const port = Number(new URL(await serve(app)).port);
    const body = Buffer.alloc(6 * 1024 * 1024, 0x61);
    const head =
      'POST /p HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: big\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    for (let i = 0; i < 3; i++) {
      const reply = await sendRaw(port, Buffer.concat([Buffer.from(head), body]), {
        timeoutMs: 10_000,
        trickle: true,
      });
      expect(
        reply.kind === 'response' ? reply.status : `${reply.kind} ${'detail' in reply ? reply.detail : ''}`,
      ).toBe(413);
    }
  }, 30_000);
});

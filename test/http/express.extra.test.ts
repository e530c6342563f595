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

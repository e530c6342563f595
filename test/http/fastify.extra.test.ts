import { Readable } from 'node:stream';
import Fastify from 'fastify';
import { createIdem, memoryStore } from 'idem';
import { idempotency } from 'idem/fastify';
import { describe, expect, it } from 'vitest';

const keyed = (url: string, key: string, payload: unknown = { a: 1 }) => ({
  method: 'POST' as const,
  url,
  headers: { 'idempotency-key': key },
  payload: payload as Record<string, unknown>,
});

async function app(options: { onInProgress?: 'wait' | 'reject' } = {}) {
  const f = Fastify();
  await f.register(idempotency({ idem: createIdem({ store: memoryStore() }), ...options }));
  return f;
}

describe('fastify specifics', () => {
  it('route config turns idempotency off or overrides options', async () => {
    const f = await app();
    let calls = 0;
    f.post('/off', { config: { idempotency: false } }, async () => ({ calls: ++calls }));
    f.post('/required', { config: { idempotency: { required: true } } }, async () => ({ calls: ++calls }));
    f.post('/default', async () => ({ calls: ++calls }));
    await f.inject(keyed('/off', 'k'));
    expect((await f.inject(keyed('/off', 'k'))).headers['idempotent-replayed']).toBeUndefined();
    expect((await f.inject({ method: 'POST', url: '/required', payload: {} })).statusCode).toBe(400);
    expect((await f.inject({ method: 'POST', url: '/default', payload: {} })).statusCode).toBe(200);
    expect(calls).toBe(3);
    await f.close();
  });

  it('a 205 reply with a payload is sent and replayed without a body', async () => {
    const f = await app();
    let calls = 0;
    f.post('/reset', async (_req, reply) => reply.code(205).send({ calls: ++calls }));
    const first = await f.inject(keyed('/reset', 'r'));
    expect(first.statusCode).toBe(205);
    expect(first.body).toBe('');
    const again = await f.inject(keyed('/reset', 'r'));
    expect(again.statusCode).toBe(205);
    expect(again.body).toBe('');
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(calls).toBe(1);
    await f.close();
  });

  it('schema validation errors happen before the claim and are never stored', async () => {
    const f = await app();
    let calls = 0;
    f.post(
      '/v',
      {
        schema: {
          body: { type: 'object', required: ['amount'], properties: { amount: { type: 'number' } } },
        },
      },
      async (_req, reply) => reply.code(201).send({ calls: ++calls }),
    );
    expect((await f.inject(keyed('/v', 'k', { wrong: 1 }))).statusCode).toBe(400);
    expect((await f.inject(keyed('/v', 'k', { wrong: 1 }))).statusCode).toBe(400);
    const ok = await f.inject(keyed('/v', 'k', { amount: 5 }));
    expect([ok.statusCode, ok.json()]).toEqual([201, { calls: 1 }]);
    await f.close();
  });

  it('our own 409/422 replies are not captured by onSend, even next to other onSend hooks', async () => {
    const f = await app({ onInProgress: 'reject' }); // the default waits up to 30 s first
    f.addHook('onSend', async (_req, reply, payload) => {
      reply.header('x-seen-by-app', '1');
      return payload;
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    f.post('/slow', async (_req, reply) => {
      calls++;
      await gate;
      return reply.code(201).send({ done: true });
    });
    const first = f.inject(keyed('/slow', 'k'));
    while (calls === 0) await new Promise((r) => setTimeout(r, 5)); // the first request holds the key
    const conflict = await f.inject(keyed('/slow', 'k'));
    const mismatch = await f.inject(keyed('/slow', 'k', { a: 2 }));
    expect([conflict.statusCode, mismatch.statusCode]).toEqual([409, 422]);
    expect(conflict.headers['x-seen-by-app']).toBe('1');
    release();
    expect((await first).statusCode).toBe(201);
    const replay = await f.inject(keyed('/slow', 'k'));
    expect([replay.statusCode, replay.json(), replay.headers['idempotent-replayed'], calls]).toEqual([
      201,
      { done: true },
      'true',
      1,
    ]);
    await f.close();
  });

  it('serialized objects, Response payloads and streams replay byte-identical', async () => {
    const f = await app();
    f.post('/obj', async (_req, reply) =>
      reply
        .code(201)
        .header('etag', '"x"')
        .send({ b: 1, a: [1, 'é'] }),
    );
    f.post(
      '/web',
      async () =>
        new Response('web body', {
          status: 202,
          headers: { 'content-type': 'text/x-web', 'x-request-id': 'r1' },
        }),
    );
    for (const url of ['/obj', '/web']) {
      const a = await f.inject(keyed(url, `k${url}`));
      const b = await f.inject(keyed(url, `k${url}`));
      expect(b.statusCode, url).toBe(a.statusCode);
      expect(b.rawPayload.equals(a.rawPayload), url).toBe(true);
      expect(b.headers['content-type'], url).toBe(a.headers['content-type']);
      expect(b.headers['idempotent-replayed'], url).toBe('true');
    }
    const web = await f.inject(keyed('/web', 'k/web'));
    expect([web.statusCode, web.body, web.headers['x-request-id']]).toEqual([202, 'web body', 'r1']);
    await f.close();
  });

  it('a hijacked reply cannot be captured: the key is released, with one warning naming the route', async () => {
    const warnings: string[] = [];
    const logger = { warn: (m: string) => warnings.push(m), error: () => {} };
    const f = Fastify();
    await f.register(idempotency({ idem: createIdem({ store: memoryStore() }), logger }));
    let calls = 0;
    f.post('/raw', async (_req, reply) => {
      calls++;
      reply.hijack();
      reply.raw.writeHead(200, { 'content-type': 'text/plain' });
      reply.raw.end('raw');
    });
    expect((await f.inject(keyed('/raw', 'k'))).body).toBe('raw');
    await new Promise((r) => setTimeout(r, 20));
    expect((await f.inject(keyed('/raw', 'k'))).body).toBe('raw');
    expect(calls).toBe(2);
    const hijacks = warnings.filter((w) => w.includes('hijack'));
    expect(hijacks).toHaveLength(1);
    expect(hijacks[0]).toContain('POST /raw');
    await f.close();
  });
});

describe('fastify streaming', () => {
  it('a streamed reply (SSE) reaches the client event by event, then replays whole', async () => {
    const f = await app();
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    f.post('/sse', async (_req, reply) => {
      reply.header('content-type', 'text/event-stream');
      return reply.send(
        Readable.from(
          (async function* () {
            yield Buffer.from('data: 1\n\n');
            await gate;
            yield Buffer.from('data: 2\n\n');
          })(),
        ),
      );
    });
    const base = await f.listen({ port: 0, host: '127.0.0.1' });
    const init = {
      method: 'POST',
      headers: { 'idempotency-key': 'sse', 'content-type': 'application/json' },
      body: '{}',
    };
    const res = await fetch(`${base}/sse`, init);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('data: 1\n\n'); // before the handler finished
    open();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read())
      rest += new TextDecoder().decode(r.value);
    expect(rest).toBe('data: 2\n\n');
    const replay = await fetch(`${base}/sse`, init);
    expect([await replay.text(), replay.headers.get('idempotent-replayed')]).toEqual([
      'data: 1\n\ndata: 2\n\n',
      'true',
    ]);
    await f.close();
  });
});

describe('fastify: request targets new URL() refuses', () => {
  it('"//[x/…", "//a:99999/…" and a garbage Host get no 500 from idem', async () => {
    const { sendRaw } = await import('../fuzz/wire.ts');
    const f = await app();
    let calls = 0;
    f.post('/*', async (_req, reply) => reply.code(201).send({ calls: ++calls }));
    const port = Number(new URL(await f.listen({ port: 0, host: '127.0.0.1' })).port);
    const raw = (target: string, host: string) =>
      Buffer.from(
        `POST ${target} HTTP/1.1\r\nHost: ${host}\r\nIdempotency-Key: k-${target}\r\n` +
          'Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
      );
    for (const [target, host] of [
      ['//[x/payments', '127.0.0.1'],
      ['//a:99999/p', '127.0.0.1'],
      ['/p', 'a:99999'],
    ] as const) {
      const before = calls;
      const first = await sendRaw(port, raw(target, host), { timeoutMs: 3000 });
      const again = await sendRaw(port, raw(target, host), { timeoutMs: 3000 });
      const status = (r: typeof first) => (r.kind === 'response' ? r.status : r.kind);
      expect(status(first), target).toBeLessThan(500);
      expect(status(again), target).toBe(status(first));
      if (status(first) === 201) {
        expect(again.kind === 'response' && again.headers.get('idempotent-replayed')?.[0], target).toBe(
          'true',
        );
        expect(calls - before, target).toBe(1);
      }
    }
    await f.close();
  });
});

describe('fastify: a 413 survives a client that keeps sending', () => {
  it('a client sending 6 MiB in pieces with Connection: close still reads the 413 (no reset)', async () => {
    const { sendRaw } = await import('../fuzz/wire.ts');
    const f = Fastify({ bodyLimit: 32 * 1024 * 1024 });
    await f.register(idempotency({ idem: createIdem({ store: memoryStore() }), bodyLimit: 64 * 1024 }));
    f.post('/p', async (_req, reply) => reply.code(201).send({ ok: true }));
    const port = Number(new URL(await f.listen({ port: 0, host: '127.0.0.1' })).port);
    const body = Buffer.alloc(6 * 1024 * 1024, 0x61);
    const head =
      'POST /p HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: big\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    for (let i = 0; i < 3; i++) {
      const reply = await sendRaw(port, Buffer.concat([Buffer.from(head), body]), {
        timeoutMs: 10_000,
        trickle: true,
      });
      expect(reply.kind === 'response' ? reply.status : `${reply.kind}`).toBe(413);
    }
    await f.close();
  }, 30_000);
});

describe('fastify: a stalled client does not hold the key', () => {
  it('a streamed reply is stored when the handler finishes, whatever the client reads', async () => {
    const { request: httpRequest } = await import('node:http');
    const size = 12 * 1024 * 1024; // far more than the loopback socket buffers hold
    const body = Buffer.alloc(size);
    for (let i = 0; i < size; i++) body[i] = (i * 13) & 255;
    const f = Fastify();
    const idem = createIdem({ store: memoryStore(), maxOutcomeBytes: 64 * 1024 * 1024 });
    await f.register(idempotency({ idem, maxStoredBodyBytes: 32 * 1024 * 1024 }));
    let calls = 0;
    f.post('/big', async (_req, reply) => {
      calls++;
      reply.header('content-type', 'application/octet-stream');
      return reply.send(
        Readable.from(
          (function* () {
            for (let i = 0; i < size; i += 256 * 1024) yield body.subarray(i, i + 256 * 1024);
          })(),
        ),
      );
    });
    const base = new URL(await f.listen({ port: 0, host: '127.0.0.1' }));
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
      req.end('{"a":1}');
    });
    stalled.pause();
    stalled.socket.pause();
    const retry = () =>
      fetch(`${base.origin}/big`, {
        method: 'POST',
        headers: { 'idempotency-key': 'stall', 'content-type': 'application/json' },
        body: '{"a":1}',
        signal: AbortSignal.timeout(3000),
      });
    let replay = await retry();
    for (const until = Date.now() + 2000; replay.status === 409 && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 50));
      replay = await retry();
    }
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(Buffer.from(await replay.arrayBuffer()).equals(body)).toBe(true);
    const chunks: Buffer[] = [];
    stalled.on('data', (c: Buffer) => chunks.push(c));
    stalled.socket.resume();
    stalled.resume();
    await new Promise((r) => stalled.once('end', r));
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
    expect(calls).toBe(1);
    await f.close();
  }, 30_000);
});

describe('fastify: registering the factory itself', () => {
  it('app.register(idempotency, { idem }) is refused with a message that shows the right call', async () => {
    const app = Fastify();
    // The usual Fastify plugin shape; idem's export is a factory that returns the plugin.
    await expect(
      app.register(idempotency as never, { idem: createIdem({ store: memoryStore() }) } as never),
    ).rejects.toThrow(/register idempotency\(\{ idem \}\)/);
    await app.close();
  });
});

import { Hono } from 'hono';
import { createIdem, memoryStore } from 'idem';
import { idempotency } from 'idem/hono';
import { describe, expect, it } from 'vitest';

const keyed = (key: string, body = '{"a":1}') => ({
  method: 'POST',
  headers: { 'idempotency-key': key, 'content-type': 'application/json' },
  body,
});

describe('hono specifics', () => {
  it('works when an earlier middleware already read the body through c.req.json()', async () => {
    const app = new Hono();
    app.use('*', async (c, next) => {
      await c.req.json();
      await next();
    });
    app.use('*', idempotency({ idem: createIdem({ store: memoryStore() }) }));
    let calls = 0;
    app.post('/x', async (c) => c.json({ calls: ++calls, body: await c.req.json() }, 201));
    const a = await app.request('/x', keyed('k'));
    expect(await a.json()).toEqual({ calls: 1, body: { a: 1 } });
    const b = await app.request('/x', keyed('k', '{ "a": 1 }'));
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expect((await app.request('/x', keyed('k', '{"a":2}'))).status).toBe(422);
  });

  it('exposes the key details as c.get("idempotency") and keeps CORS-style headers on replays', async () => {
    const app = new Hono();
    app.use('*', async (c, next) => {
      c.header('access-control-allow-origin', '*');
      await next();
    });
    app.post('/x', idempotency({ idem: createIdem({ store: memoryStore() }) }), (c) =>
      c.json({ key: c.get('idempotency')?.key, dk: c.get('idempotency')?.downstreamKey }, 201),
    );
    const a = await app.request('/x', keyed('my-key'));
    const body = (await a.json()) as { key: string; dk: string };
    expect(body.key).toBe('my-key');
    expect(body.dk).toMatch(/^idem_/);
    const b = await app.request('/x', keyed('my-key'));
    expect(b.headers.get('access-control-allow-origin')).toBe('*');
    expect(await b.json()).toEqual(body);
  });
});

describe('hono streaming', () => {
  it('an SSE response reaches the client event by event, then replays whole', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const app = new Hono();
    app.post('/sse', idempotency({ idem: createIdem({ store: memoryStore() }) }), () => {
      const body = new ReadableStream<Uint8Array>({
        async start(c) {
          c.enqueue(new TextEncoder().encode('data: 1\n\n'));
          await gate;
          c.enqueue(new TextEncoder().encode('data: 2\n\n'));
          c.close();
        },
      });
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
    });
    const res = await app.request('/sse', keyed('sse'));
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: 1\n\n');
    open();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read())
      rest += new TextDecoder().decode(r.value);
    expect(rest).toBe('data: 2\n\n');
    expect(await (await app.request('/sse', keyed('sse'))).text()).toBe('data: 1\n\ndata: 2\n\n');
  });
});

describe('hono: a client that does not read does not hold the key', () => {
  it('the outcome is stored when the handler finishes, not when the client has read it', async () => {
    const size = 4 * 1024 * 1024; // far beyond the tee's 64 KiB of client slack
    const bytes = new Uint8Array(size).map((_, i) => (i * 31) & 255);
    let calls = 0;
    const app = new Hono();
    const idem = createIdem({ store: memoryStore(), maxOutcomeBytes: 16 * 1024 * 1024 });
    app.post('/big', idempotency({ idem, maxStoredBodyBytes: 8 * 1024 * 1024 }), () => {
      calls++;
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < size; i += 128 * 1024) c.enqueue(bytes.slice(i, i + 128 * 1024));
          c.close();
        },
      });
      return new Response(body, { headers: { 'content-type': 'application/octet-stream' } });
    });
    const stalled = await app.request('/big', keyed('stall'));
    expect(stalled.status).toBe(200);
    // The first client reads nothing; retries come at once and for at most two seconds.
    let replay = await app.request('/big', keyed('stall'));
    for (const until = Date.now() + 2000; replay.status === 409 && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 50));
      replay = await app.request('/big', keyed('stall'));
    }
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(Buffer.from(await replay.arrayBuffer()).equals(bytes)).toBe(true);
    // The stalled client reads later and gets every byte.
    expect(Buffer.from(await stalled.arrayBuffer()).equals(bytes)).toBe(true);
    expect(calls).toBe(1);
  });
});

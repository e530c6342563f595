/**
 * End-to-end over real sockets: replay fidelity (JSON and SSE), attach to a live stream,
 * a client leaving mid-stream, and the large-body rules.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway } from '../../src/gateway/index.ts';
import { memoryStore } from '../../src/index.ts';
import { post, type Stack, startStack, stream, until } from './helpers.ts';

const CHAT = { model: 'demo-1', stream: true, messages: [{ role: 'user', content: 'hi' }] };

describe('gateway: replay fidelity', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({
      routes: [{ path: '/payments' }, { path: '/v1/chat/completions', concurrency: 'attach' }],
    });
  });
  afterAll(() => s.close());

  it('replays a JSON response: status, allow-listed headers, body byte for byte', async () => {
    const first = await post(s.url, '/payments', { amount: 10, currency: 'EUR' }, 'json-1');
    const again = await post(s.url, '/payments', { currency: 'EUR', amount: 10 }, 'json-1');
    expect(first.status).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(again.status).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body.equals(first.body)).toBe(true);
    expect(again.headers.location).toBe(first.headers.location);
    expect(again.headers['x-request-id']).toBe(first.headers['x-request-id']);
    expect(again.headers['content-length']).toBe(String(first.body.length));
    expect(s.demo.executions.payments).toBe(1);
  });

  it('replays an SSE stream as SSE, byte-identical, with the original id: fields', async () => {
    const live = await stream(s.url, '/v1/chat/completions', CHAT, 'sse-1').done;
    const again = await stream(s.url, '/v1/chat/completions', CHAT, 'sse-1').done;
    expect(live.headers['content-type']).toBe('text/event-stream');
    expect(again.headers['content-type']).toBe('text/event-stream');
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body.equals(live.body)).toBe(true);
    const text = live.body.toString();
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids.length).toBeGreaterThan(10);
    expect(ids).toEqual(ids.map((_, i) => i));
    expect(text).toContain('"usage":{');
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(s.demo.executions.completions).toBe(1);
  });

  it('a key is scoped by credentials: another caller with the same key runs separately', async () => {
    const a = await post(s.url, '/payments', { amount: 1 }, 'scoped-1', { authorization: 'Bearer alice' });
    const b = await post(s.url, '/payments', { amount: 1 }, 'scoped-1', { authorization: 'Bearer bob' });
    expect(b.headers['idempotent-replayed']).toBeUndefined();
    expect(JSON.parse(b.text).id).not.toBe(JSON.parse(a.text).id);
  });
});

describe('gateway: attach and client aborts', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack(
      {
        routes: [
          { path: '/v1/chat/completions', concurrency: 'attach' },
          { path: '/payments', concurrency: 'wait' },
        ],
      },
      { delayMs: 50, tokenDelayMs: 30 },
    );
  });
  afterAll(() => s.close());

  it('a duplicate joins the live stream from its start and receives it while it flows', async () => {
    const before = s.demo.executions.completions;
    const a = stream(s.url, '/v1/chat/completions', CHAT, 'attach-1');
    await a.firstChunk;
    const b = stream(s.url, '/v1/chat/completions', CHAT, 'attach-1');
    const bFirst = await b.firstChunk;
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(bFirst).toBeLessThan(ra.endedAt - 100); // live, not after the fact
    expect(rb.headers['idempotent-replayed']).toBe('true');
    expect(rb.headers['content-type']).toBe('text/event-stream');
    expect(rb.body.equals(ra.body)).toBe(true);
    expect(ra.body.toString()).toMatch(/^id: 0\n/);
    expect(s.demo.executions.completions).toBe(before + 1);
  });

  it('attach with another body is refused with 422', async () => {
    const a = stream(s.url, '/v1/chat/completions', CHAT, 'attach-2');
    await a.firstChunk;
    const other = await post(s.url, '/v1/chat/completions', { ...CHAT, model: 'other' }, 'attach-2');
    expect(other.status).toBe(422);
    await a.done;
  });

  it('a client that leaves mid-stream does not abort the upstream; the retry gets the whole body', async () => {
    const before = s.demo.executions.completions;
    const cut = await stream(s.url, '/v1/chat/completions', CHAT, 'abort-1', 2).done;
    expect(cut.aborted).toBe(true);
    const retry = await stream(s.url, '/v1/chat/completions', CHAT, 'abort-1').done;
    expect(retry.headers['idempotent-replayed']).toBe('true');
    const text = retry.body.toString();
    expect(text.startsWith(cut.body.toString().slice(0, 20))).toBe(true);
    expect(text).toContain('"usage":{');
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(s.demo.executions.completions).toBe(before + 1);
  });

  it('a client that leaves a JSON request before the answer still gets it stored', async () => {
    const before = s.demo.executions.payments;
    const req = http.request(new URL('/payments', s.url), {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', 'idempotency-key': 'abort-json' },
    });
    req.on('error', () => {});
    req.end(JSON.stringify({ amount: 5 }));
    await until(() => s.demo.executions.payments === before + 1);
    req.destroy(); // the upstream is mid-request (50 ms delay)
    const retry = await post(s.url, '/payments', { amount: 5 }, 'abort-json');
    expect(retry.status).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(s.demo.executions.payments).toBe(before + 1);
  });
});

describe('gateway: large bodies', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({
      routes: [
        { path: '/v1/chat/completions', maxResponseBytes: 1000, maxRequestBytes: 2048 },
        { path: '/payments', maxRequestBytes: 2048 },
      ],
    });
  });
  afterAll(() => s.close());

  it('a request body over the limit gets 413 before the upstream is called', async () => {
    const before = s.demo.executions.payments;
    const big = await post(s.url, '/payments', { pad: 'x'.repeat(4000) }, 'big-1');
    expect(big.status).toBe(413);
    expect(big.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(big.text).type).toMatch(/payload-too-large$/);
    expect(s.demo.executions.payments).toBe(before);
  });

  it('a chunked request body (no content-length) over the limit gets 413 too', async () => {
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(new URL('/payments', s.url), {
        method: 'POST',
        agent: false,
        headers: {
          'content-type': 'application/json',
          'idempotency-key': 'big-2',
          'transfer-encoding': 'chunked',
        },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write(`{"pad":"${'y'.repeat(1500)}`);
      req.write(`${'y'.repeat(1500)}"}`);
      req.end();
    });
    expect(status).toBe(413);
  });

  it('a response over the stored limit streams whole; the replay is status + headers + body-omitted', async () => {
    const before = s.demo.executions.completions;
    const live = await stream(s.url, '/v1/chat/completions', CHAT, 'big-resp').done;
    expect(live.body.length).toBeGreaterThan(1000);
    expect(live.body.toString().endsWith('data: [DONE]\n\n')).toBe(true);
    const again = await stream(s.url, '/v1/chat/completions', CHAT, 'big-resp').done;
    expect(again.status).toBe(200);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.headers['idempotency-replay']).toBe('body-omitted');
    expect(again.headers['content-type']).toBe('text/event-stream');
    expect(again.body.length).toBe(0);
    expect(s.demo.executions.completions).toBe(before + 1);
  });
});

describe('gateway: a stream longer than the lease', () => {
  it('keeps its key (the lease is renewed while it flows): a duplicate on another instance waits for it', async () => {
    const store = memoryStore();
    const routes = [{ path: '/v1/chat/completions', concurrency: 'wait' as const, lease: 150 }];
    const s = await startStack({ store, routes }, { delayMs: 20, tokenDelayMs: 40 });
    const other = await createGateway({ upstream: s.upstreamUrl, store, routes, purgeEvery: false });
    const otherUrl = await other.listen(0);
    try {
      const a = stream(s.url, '/v1/chat/completions', CHAT, 'long-1');
      await a.firstChunk;
      await new Promise((r) => setTimeout(r, 400)); // well past the 150 ms lease
      const b = await stream(otherUrl, '/v1/chat/completions', CHAT, 'long-1').done;
      const ra = await a.done;
      expect(b.status).toBe(200);
      expect(b.headers['idempotent-replayed']).toBe('true');
      expect(b.body.equals(ra.body)).toBe(true);
      expect(s.demo.executions.completions).toBe(1);
    } finally {
      await other.close();
      await s.close();
    }
  });
});

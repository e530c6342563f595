import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createIdem, memoryStore } from 'idem';
import {
  backoffMs,
  createIdempotentFetch,
  IdempotentFetchError,
  idempotentFetch,
  type RetryEvent,
  serverDelayMs,
} from 'idem/fetch';
import { withIdempotency } from 'idem/http';
import { afterEach, describe, expect, it } from 'vitest';

type Step = 'reset' | 'hang' | { status: number; headers?: Record<string, string>; body?: string };

interface Seen {
  key: string | undefined;
  body: string;
  at: number;
}

const servers: ReturnType<typeof createServer>[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A real server answering each request with the next scripted step (the last one repeats). */
async function scripted(steps: Step[]) {
  const seen: Seen[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    seen.push({
      key: req.headers['idempotency-key'] as string | undefined,
      body: Buffer.concat(chunks).toString(),
      at: Date.now(),
    });
    const step = steps[Math.min(seen.length - 1, steps.length - 1)] as Step;
    if (step === 'reset') return req.socket.destroy();
    if (step === 'hang') return;
    res.writeHead(step.status, step.headers);
    res.end(step.body ?? '');
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/pay`, seen };
}

const fast = { baseDelay: '10ms', maxDelay: '50ms' } as const;
const post = { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":10}' };

describe('idempotentFetch', () => {
  it('sends one random UUID key per logical request and reuses it on every retry', async () => {
    const s = await scripted(['reset', { status: 503 }, { status: 201, body: 'ok' }]);
    const res = await idempotentFetch(s.url, post, fast);
    expect([res.status, await res.text(), res.attempts, res.replayed]).toEqual([201, 'ok', 3, false]);
    expect(res.idempotencyKey).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(s.seen.map((x) => x.key)).toEqual([res.idempotencyKey, res.idempotencyKey, res.idempotencyKey]);
    expect(s.seen.map((x) => x.body)).toEqual(['{"amount":10}', '{"amount":10}', '{"amount":10}']);
    const other = await idempotentFetch(s.url, post, fast);
    expect(other.idempotencyKey).not.toBe(res.idempotencyKey);
  });

  it('uses a given key, or the one already in the headers; sf-string format on request', async () => {
    const s = await scripted([{ status: 200 }]);
    expect((await idempotentFetch(s.url, post, { key: 'order-1' })).idempotencyKey).toBe('order-1');
    await idempotentFetch(s.url, { ...post, headers: { 'Idempotency-Key': 'mine' } }, { key: 'ignored' });
    await idempotentFetch(s.url, post, { key: 'a"b', keyFormat: 'sf-string' });
    expect(s.seen.map((x) => x.key)).toEqual(['order-1', 'mine', '"a\\"b"']);
  });

  it('re-sends a streamed request body identically on each attempt', async () => {
    const s = await scripted([{ status: 502 }, { status: 200 }]);
    const body = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode('part1-'));
        c.enqueue(new TextEncoder().encode('part2'));
        c.close();
      },
    });
    await idempotentFetch(s.url, { method: 'POST', body, duplex: 'half' } as RequestInit, fast);
    expect(s.seen.map((x) => x.body)).toEqual(['part1-part2', 'part1-part2']);
  });

  it('honours Retry-After (seconds, HTTP date) and retry-after-ms', async () => {
    const s = await scripted([
      { status: 429, headers: { 'retry-after': '1' } },
      // the date is fixed now and served after the first 1 s retry: truncated to its second it
      // is 2.5–3.5 s from now, so at least ~1 s after that request even on a loaded machine
      // (+2500 left 488 ms once, when the first retry came late)
      { status: 503, headers: { 'retry-after': new Date(Date.now() + 3500).toUTCString() } },
      { status: 503, headers: { 'retry-after-ms': '150' } },
      { status: 200 },
    ]);
    const events: RetryEvent[] = [];
    const res = await idempotentFetch(s.url, post, {
      ...fast,
      maxAttempts: 5,
      onRetry: (e) => events.push(e),
    });
    expect(res.attempts).toBe(4);
    const gaps = s.seen.slice(1).map((x, i) => x.at - (s.seen[i] as Seen).at);
    expect(gaps[0]).toBeGreaterThanOrEqual(950);
    expect(gaps[1]).toBeGreaterThanOrEqual(500); // an HTTP date has 1 s resolution
    expect(gaps[2]).toBeGreaterThanOrEqual(140);
    expect(events.map((e) => ('status' in e.cause ? e.cause.status : 0))).toEqual([429, 503, 503]);
    expect(events[0]?.delayMs).toBe(1000);
  });

  it('x-should-retry overrides the status; 400 and 422 are never retried', async () => {
    const noRetry = await scripted([
      { status: 503, headers: { 'x-should-retry': 'false' } },
      { status: 200 },
    ]);
    expect((await idempotentFetch(noRetry.url, post, fast)).attempts).toBe(1);
    const retry = await scripted([{ status: 418, headers: { 'x-should-retry': 'true' } }, { status: 200 }]);
    expect((await idempotentFetch(retry.url, post, fast)).attempts).toBe(2);
    for (const status of [400, 422]) {
      const s = await scripted([{ status, headers: { 'x-should-retry': 'true' } }, { status: 200 }]);
      const res = await idempotentFetch(s.url, post, fast);
      expect([res.status, res.attempts]).toEqual([status, 1]);
    }
  });

  it('retries a 409 only while the first request is in progress', async () => {
    const inProgress = await scripted([
      {
        status: 409,
        headers: { 'content-type': 'application/problem+json' },
        body: '{"type":"https://idem.dev/problems/conflict"}',
      },
      {
        status: 409,
        headers: { 'content-type': 'application/json' },
        body: '{"error":{"code":"idempotency_key_in_use"}}',
      },
      { status: 409, headers: { 'retry-after': '0' } },
      { status: 201 },
    ]);
    expect((await idempotentFetch(inProgress.url, post, { ...fast, maxAttempts: 5 })).attempts).toBe(4);
    const business = await scripted([{ status: 409, body: 'email already taken' }, { status: 201 }]);
    expect((await idempotentFetch(business.url, post, fast)).status).toBe(409);
  });

  it('stops at maxAttempts and returns the last response', async () => {
    const s = await scripted([{ status: 503, body: 'busy' }]);
    const res = await idempotentFetch(s.url, post, { ...fast, maxAttempts: 4 });
    expect([res.status, await res.text(), res.attempts, s.seen.length]).toEqual([503, 'busy', 4, 4]);
  });

  it('throws IdempotentFetchError with the key when no attempt got a response', async () => {
    const s = await scripted(['reset']);
    const error = await idempotentFetch(s.url, post, { ...fast, key: 'k-1' }).catch((e) => e);
    expect(error).toBeInstanceOf(IdempotentFetchError);
    expect([error.key, error.attempts, s.seen.length]).toEqual(['k-1', 3, 3]);
    expect(error.cause).toBeInstanceOf(Error);
  });

  it('an overall timeout bounds attempts and waits', async () => {
    const s = await scripted(['hang']);
    const t0 = Date.now();
    const error = await idempotentFetch(s.url, post, { timeout: '300ms' }).catch((e) => e);
    expect(error).toBeInstanceOf(IdempotentFetchError);
    expect(error.message).toMatch(/deadline/);
    expect(Date.now() - t0).toBeLessThan(2000);
    const slow = await scripted([{ status: 503, headers: { 'retry-after': '5' } }, { status: 200 }]);
    const res = await idempotentFetch(slow.url, post, { timeout: '1s' }); // no time to wait 5 s
    expect([res.status, res.attempts]).toEqual([503, 1]);
  });

  it('an attempt timeout retries a hung attempt with the same key', async () => {
    const s = await scripted(['hang', { status: 200, body: 'second' }]);
    const res = await idempotentFetch(s.url, post, { ...fast, attemptTimeout: '200ms' });
    expect([await res.text(), res.attempts]).toEqual(['second', 2]);
    expect(s.seen[0]?.key).toBe(s.seen[1]?.key);
  });

  it("the caller's own abort is rethrown as is, without more attempts", async () => {
    const s = await scripted(['hang']);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('user cancelled')), 100);
    await expect(idempotentFetch(s.url, { ...post, signal: controller.signal }, fast)).rejects.toThrow(
      'user cancelled',
    );
    expect(s.seen).toHaveLength(1);
  });

  it('createIdempotentFetch binds defaults; per-call options win', async () => {
    const s = await scripted([{ status: 503 }]);
    const f = createIdempotentFetch({ ...fast, maxAttempts: 2 });
    expect((await f(s.url, post)).attempts).toBe(2);
    expect((await f(s.url, post, { maxAttempts: 1 })).attempts).toBe(1);
  });
});

describe('against an idem server: a lost response is recovered by the replay', () => {
  it('the handler runs once although the first response never arrived', async () => {
    let runs = 0;
    let drop = true;
    const endpoint = withIdempotency(
      async (req) => {
        runs++;
        return Response.json(
          { charged: ((await req.json()) as { amount: number }).amount, run: runs },
          { status: 201 },
        );
      },
      { idem: createIdem({ store: memoryStore() }), required: true },
    );
    const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const request = new Request(`http://x${req.url}`, {
        method: req.method,
        headers: req.headers as Record<string, string>,
        body: Buffer.concat(chunks),
      });
      const response = await endpoint(request);
      const body = Buffer.from(await response.arrayBuffer());
      if (drop) {
        drop = false;
        return req.socket.destroy(); // the effect happened; the answer is lost on the way back
      }
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(body);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/charge`;
    const res = await idempotentFetch(url, post, fast);
    expect([res.status, res.attempts, res.replayed]).toEqual([201, 2, true]);
    expect(await res.json()).toEqual({ charged: 10, run: 1 });
    expect(runs).toBe(1);
  });
});

describe('retry helpers', () => {
  it('serverDelayMs parses seconds, dates and ms, and ignores out-of-range values', () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    const h = (o: Record<string, string>) => new Headers(o);
    expect(serverDelayMs(h({ 'retry-after': '3' }), 60_000, now)).toBe(3000);
    expect(serverDelayMs(h({ 'retry-after': 'Tue, 01 Jan 2030 00:00:05 GMT' }), 60_000, now)).toBe(5000);
    expect(serverDelayMs(h({ 'retry-after': 'Mon, 31 Dec 2029 23:00:00 GMT' }), 60_000, now)).toBe(0);
    expect(serverDelayMs(h({ 'retry-after-ms': '250', 'retry-after': '9' }), 60_000, now)).toBe(250);
    expect(serverDelayMs(h({ 'retry-after': '120' }), 60_000, now)).toBeUndefined();
    expect(serverDelayMs(h({ 'retry-after': 'soon' }), 60_000, now)).toBeUndefined();
    expect(serverDelayMs(h({}), 60_000, now)).toBeUndefined();
  });

  it('backoffMs is full jitter under a doubling, capped ceiling', () => {
    expect(backoffMs(1, 500, 8000, () => 0.999)).toBe(499);
    expect(backoffMs(3, 500, 8000, () => 0.999)).toBe(1998);
    expect(backoffMs(10, 500, 8000, () => 0.999)).toBe(7992);
    expect(backoffMs(4, 500, 8000, () => 0)).toBe(0);
  });
});

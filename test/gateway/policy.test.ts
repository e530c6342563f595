/**
 * End-to-end over real sockets: the outcome policy (§6.5), upstream failures, concurrency
 * modes, the derived downstream key, abandoned leases, and request acceptance (§6.1).
 */
import type http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordIdOf } from '../../src/core/keys.ts';
import { createGateway } from '../../src/gateway/index.ts';
import { httpFingerprint } from '../../src/http/fingerprint.ts';
import { memoryStore } from '../../src/index.ts';
import { freePort, post, request, type Stack, startStack, startUpstream, until } from './helpers.ts';

describe('gateway: outcome policy', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({
      routes: [
        { path: '/payments', outcomes: { '502': 'release' } },
        { path: '/v1/chat/completions', outcomes: { '5xx': 'release', '400': 'release' } },
      ],
    });
  });
  afterAll(() => s.close());

  it('503 releases the key: the retry executes again', async () => {
    const before = s.demo.executions.payments;
    const a = await post(s.url, '/payments?status=503', { amount: 1 }, 'p-503');
    const b = await post(s.url, '/payments?status=503', { amount: 1 }, 'p-503');
    expect([a.status, b.status]).toEqual([503, 503]);
    expect(b.headers['idempotent-replayed']).toBeUndefined();
    expect(s.demo.executions.payments).toBe(before + 2);
  });

  it('429 and 401 release; 400 and 404 are stored', async () => {
    for (const [status, runs] of [
      [429, 2],
      [401, 2],
      [400, 1],
      [404, 1],
    ] as const) {
      const before = s.demo.executions.payments;
      await post(s.url, `/payments?status=${status}`, {}, `p-${status}`);
      const again = await post(s.url, `/payments?status=${status}`, {}, `p-${status}`);
      expect(again.status).toBe(status);
      expect(s.demo.executions.payments - before).toBe(runs);
    }
  });

  it('an ambiguous 500 is stored and replayed with x-should-retry: false', async () => {
    const before = s.demo.executions.payments;
    await post(s.url, '/payments?status=500', { amount: 1 }, 'p-500');
    const again = await post(s.url, '/payments?status=500', { amount: 1 }, 'p-500');
    expect(again.status).toBe(500);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.headers['x-should-retry']).toBe('false');
    expect(s.demo.executions.payments).toBe(before + 1);
  });

  it('route overrides: a status or a class can be released', async () => {
    const before = s.demo.executions.payments;
    await post(s.url, '/payments?status=502', {}, 'p-502');
    await post(s.url, '/payments?status=502', {}, 'p-502');
    expect(s.demo.executions.payments).toBe(before + 2);
    const c = s.demo.executions.completions;
    await post(s.url, '/v1/chat/completions?status=400', {}, 'c-400');
    await post(s.url, '/v1/chat/completions?status=400', {}, 'c-400');
    await post(s.url, '/v1/chat/completions?status=504', {}, 'c-504');
    await post(s.url, '/v1/chat/completions?status=504', {}, 'c-504');
    expect(s.demo.executions.completions).toBe(c + 4);
  });
});

describe('gateway: upstream failures', () => {
  it('upstream down: 502 upstream-unavailable and the key is released', async () => {
    const port = await freePort();
    const gateway = await createGateway({
      upstream: `http://127.0.0.1:${port}`,
      store: 'memory',
      purgeEvery: false,
    });
    const url = await gateway.listen(0);
    try {
      const down = await post(url, '/payments', { amount: 1 }, 'down-1');
      expect(down.status).toBe(502);
      expect(JSON.parse(down.text).type).toMatch(/upstream-unavailable$/);
      expect(down.headers['idempotent-replayed']).toBeUndefined();
      // the key is free: once the upstream is up, the same key executes
      let calls = 0;
      const { createServer } = await import('node:http');
      const server = createServer((req, res) => {
        calls++;
        req.resume();
        res.writeHead(201, { 'content-type': 'application/json' }).end('{"ok":true}');
      });
      await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
      const up = await post(url, '/payments', { amount: 1 }, 'down-1');
      expect(up.status).toBe(201);
      expect(up.headers['idempotent-replayed']).toBeUndefined();
      expect(calls).toBe(1);
      server.closeAllConnections();
      server.close();
    } finally {
      await gateway.close();
    }
  });

  it('an upstream that breaks off mid-body: the client is cut, the retry gets 502 indeterminate-outcome', async () => {
    let calls = 0;
    const upstream = await startUpstream((req, res) => {
      calls++;
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('id: 1\ndata: partial\n\n');
      setTimeout(() => res.socket?.destroy(), 30);
    });
    const gateway = await createGateway({ upstream: upstream.url, store: 'memory', purgeEvery: false });
    const url = await gateway.listen(0);
    try {
      await expect(post(url, '/stream', {}, 'broken-1')).rejects.toThrow();
      const retry = await post(url, '/stream', {}, 'broken-1');
      expect(retry.status).toBe(502);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(retry.headers['x-should-retry']).toBe('false');
      expect(JSON.parse(retry.text).type).toMatch(/indeterminate-outcome$/);
      expect(calls).toBe(1);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });

  it('a timeout after the request was sent is stored as 504 upstream-timeout', async () => {
    let calls = 0;
    const upstream = await startUpstream((req) => {
      calls++;
      req.resume(); // never answers
    });
    const gateway = await createGateway({
      upstream: upstream.url,
      store: 'memory',
      purgeEvery: false,
      upstreamTimeout: 200,
    });
    const url = await gateway.listen(0);
    try {
      const first = await post(url, '/slow', {}, 'slow-1');
      expect(first.status).toBe(504);
      const again = await post(url, '/slow', {}, 'slow-1');
      expect(again.status).toBe(504);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(calls).toBe(1);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('gateway: concurrency modes and the downstream key', () => {
  let seen: http.IncomingHttpHeaders[] = [];
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let gatewayUrl: string;
  let otherUrl: string; // a second instance on the same store
  let close: () => Promise<void>;
  beforeAll(async () => {
    upstream = await startUpstream((req, res) => {
      seen.push(req.headers);
      req.resume();
      setTimeout(() => {
        res.writeHead(201, {
          'content-type': 'application/json',
          'set-cookie': 'sid=1',
          'x-ratelimit-remaining': '9',
        });
        res.end(JSON.stringify({ n: seen.length, at: Date.now() }));
      }, 300);
    });
    const config = {
      upstream: upstream.url,
      store: memoryStore(),
      purgeEvery: false as const,
      routes: [
        { path: '/reject', concurrency: 'reject' as const },
        { path: '/wait', concurrency: 'wait' as const },
        { path: '/short-wait', concurrency: 'wait' as const, waitTimeout: 50 },
      ],
    };
    const gateway = await createGateway(config);
    const other = await createGateway(config);
    gatewayUrl = await gateway.listen(0);
    otherUrl = await other.listen(0);
    close = async () => {
      await gateway.close();
      await other.close();
      await upstream.close();
    };
  });
  afterAll(() => close());

  it('reject: a duplicate in flight gets 409 + Retry-After; after completion it is replayed', async () => {
    seen = [];
    const a = post(gatewayUrl, '/reject', { x: 1 }, 'r-1');
    await until(() => seen.length === 1);
    const b = await post(gatewayUrl, '/reject', { x: 1 }, 'r-1');
    expect(b.status).toBe(409);
    expect(Number(b.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(b.text).type).toMatch(/conflict$/);
    const ra = await a;
    const c = await post(gatewayUrl, '/reject', { x: 1 }, 'r-1');
    expect(c.body.equals(ra.body)).toBe(true);
    expect(c.headers['idempotent-replayed']).toBe('true');
    expect(seen).toHaveLength(1);
  });

  it('wait: duplicates wait and get the identical response; the upstream runs once', async () => {
    seen = [];
    const all = await Promise.all(
      Array.from({ length: 10 }, () => post(gatewayUrl, '/wait', { x: 2 }, 'w-1')),
    );
    expect(seen).toHaveLength(1);
    for (const r of all) expect(r.body.equals(all[0]!.body)).toBe(true);
    expect(all.filter((r) => r.headers['idempotent-replayed'] === 'true')).toHaveLength(9);
  });

  it('wait across instances: the duplicate on another instance waits for the stored outcome', async () => {
    seen = [];
    const a = post(gatewayUrl, '/wait', { x: 3 }, 'w-2');
    await until(() => seen.length === 1);
    const b = await post(otherUrl, '/wait', { x: 3 }, 'w-2');
    const ra = await a;
    expect(b.status).toBe(201);
    expect(b.headers['idempotent-replayed']).toBe('true');
    expect(b.body.equals(ra.body)).toBe(true);
    expect(seen).toHaveLength(1);
  });

  it('wait past waitTimeout answers 409 + Retry-After', async () => {
    seen = [];
    const a = post(gatewayUrl, '/short-wait', { x: 3 }, 'w-3');
    await until(() => seen.length === 1);
    const started = Date.now();
    const b = await post(otherUrl, '/short-wait', { x: 3 }, 'w-3');
    expect(b.status).toBe(409);
    expect(Date.now() - started).toBeGreaterThanOrEqual(40);
    expect(Number(b.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    await a;
  });

  it('forwards a derived key, never the raw one; never replays set-cookie or rate-limit headers', async () => {
    seen = [];
    const first = await post(gatewayUrl, '/wait', { x: 4 }, 'raw-client-key');
    expect(first.headers['set-cookie']).toEqual(['sid=1']); // the live answer is untouched
    const again = await post(gatewayUrl, '/wait', { x: 4 }, 'raw-client-key');
    expect(seen).toHaveLength(1);
    const sent = seen[0]!['idempotency-key'] as string;
    expect(sent).toMatch(/^idem_[A-Za-z0-9_-]{40}$/);
    expect(sent).not.toContain('raw-client-key');
    expect(seen[0]!['x-forwarded-for']).toBe('127.0.0.1');
    expect(again.headers['set-cookie']).toBeUndefined();
    expect(again.headers['x-ratelimit-remaining']).toBeUndefined();
  });
});

describe('gateway: an abandoned lease (the forwarding instance died)', () => {
  const key = 'abandoned-1';
  const body = JSON.stringify({ amount: 7 });
  const fingerprint = httpFingerprint({
    method: 'POST',
    url: 'http://gateway/payments',
    headers: new Headers({ 'content-type': 'application/json' }),
    body: Buffer.from(body),
  });
  const recordId = recordIdOf(['gateway', 'anonymous'], key);

  for (const onAbandoned of ['fail', 'reexecute'] as const) {
    it(`onAbandoned: '${onAbandoned}'`, async () => {
      const store = memoryStore();
      // a holder that claimed, forwarded, and died: its lease runs out and is never renewed
      const claim = await store.claim({
        id: recordId,
        fingerprint,
        leaseMs: 100,
        ttlMs: 60_000,
        token: 'dead',
      });
      expect(claim.status).toBe('acquired');
      const s = await startStack({ store, defaults: { onAbandoned, concurrency: 'wait' } });
      try {
        const r = await request(s.url, {
          path: '/payments',
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          body,
        });
        if (onAbandoned === 'fail') {
          expect(r.status).toBe(502);
          expect(JSON.parse(r.text).type).toMatch(/indeterminate-outcome$/);
          expect(s.demo.executions.payments).toBe(0);
          const again = await request(s.url, {
            path: '/payments',
            headers: { 'content-type': 'application/json', 'idempotency-key': key },
            body,
          });
          expect(again.status).toBe(502);
          expect(again.headers['idempotent-replayed']).toBe('true');
        } else {
          expect(r.status).toBe(201);
          expect(s.demo.executions.payments).toBe(1);
        }
      } finally {
        await s.close();
      }
    });
  }
});

describe('gateway: request acceptance', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({
      routes: [{ path: '/payments', key: 'required' }, { path: '/v1/*', key: 'ignore' }, { path: '/*' }],
    });
  });
  afterAll(() => s.close());

  it('a required key that is missing: 400 missing-key with a describedby link', async () => {
    const r = await post(s.url, '/payments', { amount: 1 });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).type).toMatch(/missing-key$/);
    expect(r.headers.link).toMatch(/rel="describedby"/);
  });

  it('malformed keys: 400 invalid-key (list, too long, bad characters, bad sf-string)', async () => {
    for (const key of ['a, b', 'x'.repeat(256), 'has space', '"unterminated']) {
      const r = await post(s.url, '/payments', { amount: 1 }, key);
      expect(r.status, key).toBe(400);
      expect(JSON.parse(r.text).type).toMatch(/invalid-key$/);
    }
    expect(s.demo.executions.payments).toBe(0);
  });

  it('"k" (sf-string) and k (bare) are one key', async () => {
    const a = await post(s.url, '/payments', { amount: 2 }, '"same-key"');
    const b = await post(s.url, '/payments', { amount: 2 }, 'same-key');
    expect(b.headers['idempotent-replayed']).toBe('true');
    expect(b.body.equals(a.body)).toBe(true);
  });

  it('GET with a key and ignored routes pass through, never stored', async () => {
    const created = JSON.parse((await post(s.url, '/payments', { amount: 3 }, 'get-1')).text);
    const g1 = await request(s.url, {
      method: 'GET',
      path: created.id ? `/payments/${created.id}` : '/',
      headers: { 'idempotency-key': 'g' },
    });
    expect(g1.status).toBe(200);
    expect(g1.headers['idempotent-replayed']).toBeUndefined();
    const before = s.demo.executions.completions;
    await post(s.url, '/v1/chat/completions', {}, 'ignored');
    await post(s.url, '/v1/chat/completions', {}, 'ignored');
    expect(s.demo.executions.completions).toBe(before + 2);
  });

  it('an optional key that is missing passes through', async () => {
    const r = await post(s.url, '/stats-like', {});
    expect(r.status).toBe(404); // the demo service's own answer
  });
});

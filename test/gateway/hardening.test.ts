/**
 * Regression tests of the "Hardening" issue: each one failed before its fix. Real sockets
 * only; malformed request targets go through raw `node:net` sockets, since Node's client
 * refuses to send them.
 */
import net from 'node:net';
import { memoryStore, type Store, StoreUnavailableError } from 'idem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway } from '../../src/gateway/index.ts';
import { post, request, type Stack, startStack, startUpstream, until } from './helpers.ts';

/** Sends `text` on a raw socket; resolves with what came back before the close (or `ms`). */
function raw(url: string, text: string | Buffer, ms = 3000): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(Number(port), hostname);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      const t = Buffer.concat(chunks).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(t)?.[1] ?? 0), text: t });
    };
    const timer = setTimeout(done, ms);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', done);
    socket.on('error', done);
    socket.on('close', done);
    socket.write(text);
  });
}

const quietLogger = () => {
  const lines: string[] = [];
  return {
    lines,
    warn: (m: string) => void lines.push(`warn: ${m}`),
    error: (m: string, e?: unknown) => void lines.push(`error: ${m} ${e instanceof Error ? e.message : ''}`),
  };
};

describe('gateway hardening: request targets', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ routes: [{ path: '/payments', key: 'required' }], logger: quietLogger() });
  });
  afterAll(() => s.close());

  it.each(['OPTIONS * HTTP/1.1', 'POST * HTTP/1.1', 'GET ftp://x/y HTTP/1.1', 'GET //[x/y HTTP/1.1'])(
    '%s is a 400 problem, not a 502',
    async (line) => {
      const r = await raw(s.url, `${line}\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      expect(r.status).toBe(400);
      expect(r.text).toMatch(/application\/problem\+json/);
    },
  );

  it('300 bad targets do not use up the upstream pool: a normal request answers within a second', async () => {
    for (let i = 0; i < 300; i += 30) {
      await Promise.all(
        Array.from({ length: 30 }, () =>
          raw(s.url, 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 2000),
        ),
      );
    }
    const started = Date.now();
    const r = await Promise.race([
      post(s.url, '/payments', { amount: 1 }, 'after-flood'),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('hung')), 1000)),
    ]);
    expect(r.status).toBe(201);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('GET HTTP://x/y (absolute-form, any scheme case) is forwarded as GET /y', async () => {
    const r = await raw(s.url, 'GET HTTP://x/payments/none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(r.status).toBe(404); // the demo service's answer for an unknown payment
  });

  it('absolute-form targets are normalized: the route applies, the upstream runs once', async () => {
    const before = s.demo.executions.payments;
    const send = (key: string | undefined) =>
      raw(
        s.url,
        'POST http://upstream.example/payments HTTP/1.1\r\nHost: upstream.example\r\n' +
          `Content-Type: application/json\r\n${key ? `Idempotency-Key: ${key}\r\n` : ''}` +
          'Content-Length: 12\r\nConnection: close\r\n\r\n{"amount":1}',
      );
    const a = await send('proxy-form');
    const b = await send('proxy-form');
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.text).toMatch(/idempotent-replayed: true/i);
    expect(s.demo.executions.payments - before).toBe(1);
    expect((await send(undefined)).status).toBe(400); // key: 'required' holds
  });

  it.each(['//[x/payments', '//a:99999/payments'])(
    'target %s is a 4xx problem, never an empty 500',
    async (target) => {
      const r = await raw(
        s.url,
        `POST ${target}?token=SECRET HTTP/1.1\r\nHost: x\r\nIdempotency-Key: t1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
      );
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(r.text).toMatch(/application\/problem\+json/);
    },
  );

  it.each([
    '/files/../payments',
    '/files/%2e%2E/payments',
    '/files/.%2e/payments',
    '/./payments',
    '/payments/..',
  ])(
    'dot segments in %s are a 400 invalid-target: no route is skipped by a path the upstream may resolve',
    async (target) => {
      const g = await startStack({
        routes: [
          { path: '/files/*', key: 'ignore' },
          { path: '/payments', key: 'required' },
        ],
        logger: quietLogger(),
      });
      try {
        const before = g.demo.executions.payments;
        const r = await raw(
          g.url,
          `POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{"amount":1}`,
        );
        expect(r.status).toBe(400);
        expect(r.text).toMatch(/invalid-target/);
        expect(g.demo.executions.payments).toBe(before);
      } finally {
        await g.close();
      }
    },
  );

  it.each([
    ['a lone surrogate', '{"a":"\\ud800"}'],
    ['JSON nested 10 000 deep', `${'['.repeat(10_000)}${']'.repeat(10_000)}`],
  ])('a body with %s is a 4xx problem, never an empty 500', async (_, body) => {
    const r = await request(s.url, {
      path: '/payments',
      headers: { 'content-type': 'application/json', 'idempotency-key': `body-${body.length}` },
      body,
    });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(r.headers['content-type']).toBe('application/problem+json');
  });
});

describe('gateway hardening: scope', () => {
  let s: Stack;
  beforeAll(async () => {
    // The configuration docs/gateway.md used to give for Anthropic: scoped by x-api-key only.
    s = await startStack({
      scopeHeaders: ['x-api-key'],
      scopeCookies: ['session'],
      routes: [{ path: '/payments' }, { path: '/v1/*', scope: 'required' }],
      logger: quietLogger(),
    });
  });
  afterAll(() => s.close());

  it.each([
    'Authorization: ',
    'Authorization:   ',
    'X-API-Key: ',
    'Proxy-Authorization: ',
    'Cookie: session=',
  ])('an empty credential (%s) is no credential: scope: required answers 401', async (line) => {
    const r = await raw(
      s.url,
      `POST /v1/x HTTP/1.1\r\nHost: x\r\n${line}\r\nIdempotency-Key: empty-cred\r\n` +
        'Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
    );
    expect(r.status).toBe(401);
    expect(r.text).toMatch(/missing-credentials/);
  });

  it('two Bearer tenants never share a record, whatever scopeHeaders says', async () => {
    const a = await post(s.url, '/payments', { amount: 1 }, 'same', { authorization: 'Bearer tenant-a' });
    const b = await post(s.url, '/payments', { amount: 1 }, 'same', { authorization: 'Bearer tenant-b' });
    expect(b.headers['idempotent-replayed']).toBeUndefined();
    expect(b.body.equals(a.body)).toBe(false);
  });

  it('proxy-authorization is a credential too', async () => {
    const a = await post(s.url, '/payments', { amount: 1 }, 'proxy', { 'proxy-authorization': 'Basic YQ==' });
    const b = await post(s.url, '/payments', { amount: 1 }, 'proxy', { 'proxy-authorization': 'Basic Yg==' });
    expect(b.headers['idempotent-replayed']).toBeUndefined();
    expect(b.body.equals(a.body)).toBe(false);
  });

  it('scheme case and whitespace do not start a new record', async () => {
    const a = await post(s.url, '/payments', { amount: 2 }, 'norm', { authorization: 'Bearer tok' });
    const b = await post(s.url, '/payments', { amount: 2 }, 'norm', { authorization: 'bearer   tok ' });
    expect(b.headers['idempotent-replayed']).toBe('true');
    expect(b.body.equals(a.body)).toBe(true);
  });

  it('only the configured cookies scope: another cookie does not start a new record', async () => {
    const a = await post(s.url, '/payments', { amount: 3 }, 'cookie', { cookie: 'session=s1' });
    const b = await post(s.url, '/payments', { amount: 3 }, 'cookie', { cookie: '_ga=x; session=s1' });
    expect(b.headers['idempotent-replayed']).toBe('true');
    expect(b.body.equals(a.body)).toBe(true);
    const c = await post(s.url, '/payments', { amount: 3 }, 'cookie', { cookie: 'session=s2' });
    expect(c.headers['idempotent-replayed']).toBeUndefined();
  });

  it('duplicate credential headers are refused with 400', async () => {
    const r = await raw(
      s.url,
      'POST /payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n' +
        'Idempotency-Key: dup\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
    );
    expect(r.status).toBe(400);
    expect(r.text).toMatch(/duplicate-credentials/);
  });

  it("scope: 'required' answers 401 to a keyed request without credentials", async () => {
    const before = s.demo.executions.completions;
    const r = await post(s.url, '/v1/chat/completions', { messages: [] }, 'anon');
    expect(r.status).toBe(401);
    expect(JSON.parse(r.text).type).toMatch(/missing-credentials$/);
    expect(s.demo.executions.completions).toBe(before);
    const ok = await post(s.url, '/v1/chat/completions', { messages: [] }, 'anon', { 'x-api-key': 'k' });
    expect(ok.status).toBe(200);
  });
});

describe('gateway hardening: concurrency', () => {
  const slowHead = 0;
  let calls = 0;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  beforeAll(async () => {
    upstream = await startUpstream((req, res) => {
      calls++;
      req.resume();
      const url = new URL(req.url ?? '/', 'http://u');
      const status = Number(url.searchParams.get('status') ?? 201);
      setTimeout(
        () => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ n: calls }));
        },
        Number(url.searchParams.get('delay') ?? slowHead),
      );
    });
  });
  afterAll(() => upstream.close());

  it('an attach joiner gives up after waitTimeout even while the holder has no head', async () => {
    const gw = await createGateway({
      upstream: upstream.url,
      store: memoryStore(),
      purgeEvery: false,
      routes: [{ path: '/*', concurrency: 'attach', waitTimeout: 200 }],
    });
    const url = await gw.listen(0);
    try {
      const first = post(url, '/a?delay=2500', { x: 1 }, 'attach-1');
      await until(() => calls > 0);
      const started = Date.now();
      const dup = await post(url, '/a?delay=2500', { x: 1 }, 'attach-1');
      expect(dup.status).toBe(409);
      expect(Date.now() - started).toBeLessThan(1500);
      await first;
    } finally {
      await gw.close();
    }
  });

  it('409 Retry-After is a short estimate (≤ 2 s by default) with retry-after-ms, not the lease', async () => {
    const gw = await createGateway({
      upstream: upstream.url,
      store: memoryStore(),
      purgeEvery: false,
      routes: [{ path: '/*', concurrency: 'reject', lease: '30s' }],
    });
    const url = await gw.listen(0);
    try {
      const before = calls;
      const first = post(url, '/b?delay=1500', { x: 1 }, 'ra-1');
      await until(() => calls > before);
      const dup = await post(url, '/b?delay=1500', { x: 1 }, 'ra-1');
      expect(dup.status).toBe(409);
      expect(Number(dup.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(dup.headers['retry-after'])).toBeLessThanOrEqual(2);
      const ms = Number(dup.headers['retry-after-ms']);
      expect(ms).toBeGreaterThanOrEqual(1000);
      expect(ms).toBeLessThanOrEqual(2000);
      await first;
    } finally {
      await gw.close();
    }
  });

  it("'wait' is the default: concurrent duplicates become one execution and one answer", async () => {
    const gw = await createGateway({ upstream: upstream.url, store: memoryStore(), purgeEvery: false });
    const url = await gw.listen(0);
    try {
      const before = calls;
      const all = await Promise.all(
        Array.from({ length: 5 }, () => post(url, '/c?delay=300', { x: 1 }, 'wait-default')),
      );
      expect(calls - before).toBe(1);
      for (const r of all) {
        expect(r.status).toBe(201);
        expect(r.body.equals(all[0]!.body)).toBe(true);
      }
    } finally {
      await gw.close();
    }
  });

  it('a waiting duplicate whose client went away runs nothing and is not counted as replayed', async () => {
    const gw = await createGateway({
      upstream: upstream.url,
      store: memoryStore(),
      purgeEvery: false,
      routes: [{ path: '/*', concurrency: 'wait' }],
    });
    const url = await gw.listen(0);
    try {
      const before = calls;
      // the holder's answer (503) releases the key; a waiter still there would run it again
      const first = post(url, '/d?delay=600&status=503', { x: 1 }, 'gone');
      await until(() => calls > before);
      const { port } = new URL(url);
      const socket = net.connect(Number(port), '127.0.0.1');
      socket.on('error', () => {});
      socket.write(
        'POST /d?delay=600&status=503 HTTP/1.1\r\nHost: x\r\nIdempotency-Key: gone\r\n' +
          'Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{"x":1}',
      );
      await new Promise((r) => setTimeout(r, 150));
      socket.destroy();
      expect((await first).status).toBe(503);
      await new Promise((r) => setTimeout(r, 900));
      expect(calls - before).toBe(1);
      const text = await gw.metrics.registry.metrics();
      expect(text).not.toMatch(/idem_gateway_requests_total\{route="\/\*",result="replayed"\} [1-9]/);
    } finally {
      await gw.close();
    }
  });

  it('a stored live 5xx says x-should-retry: false; a released 503 does not', async () => {
    const gw = await createGateway({ upstream: upstream.url, store: memoryStore(), purgeEvery: false });
    const url = await gw.listen(0);
    try {
      const live = await post(url, '/e?delay=0&status=500', { x: 1 }, '500-live');
      expect(live.status).toBe(500);
      expect(live.headers['x-should-retry']).toBe('false');
      const released = await post(url, '/e?delay=0&status=503', { x: 1 }, '503-live');
      expect(released.headers['x-should-retry']).toBeUndefined();
    } finally {
      await gw.close();
    }
  });
});

describe('gateway hardening: failures', () => {
  it('an outcome the store refuses ends the live response as broken, and is logged', async () => {
    const base = memoryStore();
    const refusing: Store = {
      ...base,
      name: 'refusing',
      complete: () => Promise.reject(new StoreUnavailableError('store down (test)')),
    };
    const logger = quietLogger();
    const s = await startStack({ store: refusing, logger });
    try {
      const outcome = await post(s.url, '/payments', { amount: 1 }, 'unstored').then(
        (r) => `status ${r.status}`,
        (e: Error) => `broken: ${e.message}`,
      );
      expect(outcome).toMatch(/^broken/);
      expect(logger.lines.join('\n')).toMatch(/error: .*not stored/);
    } finally {
      await s.close();
    }
  });

  it('the 500 path answers problem+json and logs the route, never the query', async () => {
    const logger = quietLogger();
    const failing: Store = {
      ...memoryStore(),
      name: 'failing',
      // a broken store answer: the engine fails on it with a TypeError, not a store error
      claim: () => Promise.resolve({ status: 'existing', record: null, now: 0 }) as never,
    };
    const s = await startStack({ store: failing, logger });
    try {
      const r = await post(s.url, '/payments?token=SECRET', { amount: 1 }, 'k500');
      expect(r.status).toBe(500);
      expect(r.headers['content-type']).toBe('application/problem+json');
      const log = logger.lines.join('\n');
      expect(log).toMatch(/on route \/\*/); // the route, not the target
      expect(log).not.toMatch(/SECRET/);
    } finally {
      await s.close();
    }
  });

  it('a 413 reaches a client that keeps sending a 2 MiB body', async () => {
    const s = await startStack({ logger: quietLogger() });
    try {
      const { port } = new URL(s.url);
      // Like most clients, this one reads the answer only after sending its whole body.
      const got = await new Promise<string>((resolve) => {
        const socket = net.connect(Number(port), '127.0.0.1');
        let text = '';
        const total = 2 * 1024 * 1024;
        socket.pause();
        socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
        socket.on('error', () => resolve(text));
        socket.on('close', () => resolve(text));
        socket.write(
          'POST /payments HTTP/1.1\r\nHost: x\r\nIdempotency-Key: big\r\n' +
            `Content-Type: text/plain\r\nContent-Length: ${total}\r\n\r\n`,
        );
        const chunk = Buffer.alloc(64 * 1024, 'a');
        let sent = 0;
        const tick = () => {
          if (socket.destroyed) return;
          if (sent >= total) {
            setTimeout(() => socket.resume(), 50);
            return;
          }
          sent += chunk.byteLength;
          if (socket.write(chunk)) setTimeout(tick, 1);
          else socket.once('drain', tick);
        };
        tick();
      });
      expect(got).toMatch(/^HTTP\/1\.1 413/);
    } finally {
      await s.close();
    }
  });

  it('/healthz reflects whether the upstream is reachable', async () => {
    const up = await startUpstream((_req, res) => res.end('ok'));
    const gw = await createGateway({ upstream: up.url, store: memoryStore(), purgeEvery: false });
    const url = await gw.listen(0);
    try {
      expect((await request(url, { method: 'GET', path: '/healthz' })).status).toBe(200);
      await up.close();
      const down = await request(url, { method: 'GET', path: '/healthz' });
      expect(down.status).toBe(503);
      expect(JSON.parse(down.text)).toMatchObject({ status: 'unavailable', upstream: 'unreachable' });
    } finally {
      await gw.close();
    }
  });

  it('the health check clears its timer', async () => {
    const s = await startStack();
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    const pending = new Set<unknown>();
    globalThis.setTimeout = ((fn: () => void, ms?: number) => {
      const t = realSet(fn, ms);
      if (ms === 2000) pending.add(t);
      return t;
    }) as typeof setTimeout;
    globalThis.clearTimeout = ((t: Parameters<typeof clearTimeout>[0]) => {
      pending.delete(t);
      realClear(t);
    }) as typeof clearTimeout;
    try {
      await request(s.url, { method: 'GET', path: '/healthz' });
    } finally {
      globalThis.setTimeout = realSet;
      globalThis.clearTimeout = realClear;
      await s.close();
    }
    expect(pending.size).toBe(0);
  });
});

describe('gateway hardening: config', () => {
  const up = 'http://127.0.0.1:9';
  it('a bad defaults field is named as defaults.<field>', async () => {
    await expect(
      createGateway({ upstream: up, store: 'memory', defaults: { ttl: 'a day' as never } }),
    ).rejects.toThrow(/defaults\.ttl/);
  });

  it('a lease under 50 ms is refused, not clamped', async () => {
    await expect(
      createGateway({ upstream: up, store: 'memory', routes: [{ path: '/a', lease: 10 }] }),
    ).rejects.toThrow(/routes\[0\]\.lease/);
  });

  it.each([
    [{ health: 'healthz' }, /endpoints\.health must be false or a path starting with "\/"/],
    [{ metrics: true }, /endpoints\.metrics must be false or a path/],
    [{ health: '/ops', metrics: '/ops' }, /endpoints\.metrics is \/ops, as endpoints\.health/],
  ])('endpoints %o is refused, not a probe that never answers', async (endpoints, message) => {
    await expect(
      createGateway({ upstream: up, store: 'memory', endpoints: endpoints as never }),
    ).rejects.toThrow(message);
  });

  it('endpoints.policy: false leaves no Link: <false> on a 400 missing-key', async () => {
    const g = await startStack({
      endpoints: { policy: false },
      routes: [{ path: '/payments', key: 'required' }],
      logger: quietLogger(),
    });
    try {
      const r = await request(g.url, {
        path: '/payments',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect(r.status).toBe(400);
      expect(r.headers.link).not.toMatch(/<false>/);
      expect(r.headers.link).toMatch(/^<https?:\/\/[^>]+>; rel="describedby"$/);
    } finally {
      await g.close();
    }
  });

  it('maxRetryAfter is validated', async () => {
    await expect(
      createGateway({ upstream: up, store: 'memory', routes: [{ path: '/a', maxRetryAfter: '5m' }] }),
    ).rejects.toThrow(/routes\[0\]\.maxRetryAfter/);
  });
});

describe('gateway hardening: the raw key upstream', () => {
  it('pass-through requests forward the client key unchanged; enforced ones never do', async () => {
    const seen: (string | undefined)[] = [];
    const up = await startUpstream((req, res) => {
      seen.push(req.headers['idempotency-key'] as string | undefined);
      req.resume();
      res.writeHead(201, { 'content-type': 'application/json' }).end('{}');
    });
    const gw = await createGateway({
      upstream: up.url,
      store: memoryStore(),
      purgeEvery: false,
      routes: [{ path: '/files/*', key: 'ignore' }, { path: '/*' }],
      logger: quietLogger(),
    });
    const url = await gw.listen(0);
    try {
      await post(url, '/files/a', {}, 'client-key'); // key: 'ignore': a plain proxy
      await request(url, { method: 'GET', path: '/x', headers: { 'idempotency-key': 'client-key' } });
      await post(url, '/payments', {}, 'client-key'); // enforced: the derived key only
      expect(seen.slice(0, 2)).toEqual(['client-key', 'client-key']);
      expect(seen[2]).toMatch(/^idem_/);
    } finally {
      await gw.close();
      await up.close();
    }
  });
});

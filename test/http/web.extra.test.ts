import { createIdem, memoryStore, type Store } from 'idem';
import { idempotencyInfo, withIdempotency } from 'idem/http';
import { describe, expect, it } from 'vitest';
import { pause, recordingLogger } from './harness.ts';

const post = (key: string, body = '{"a":1}', headers: Record<string, string> = {}) =>
  new Request('http://api.test/orders', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, ...headers },
    body,
  });

describe('withIdempotency specifics', () => {
  it('passes extra handler arguments through (Next.js context, Workers env)', async () => {
    const endpoint = withIdempotency(
      async (_req: Request, ctx: { params: { id: string } }) => Response.json(ctx.params, { status: 201 }),
      { idem: createIdem({ store: memoryStore() }) },
    );
    const res = await endpoint(post('k'), { params: { id: '42' } });
    expect(await res.json()).toEqual({ id: '42' });
  });

  it("handlerErrors: 'problem' answers 500 handler-error and releases the key", async () => {
    const logger = recordingLogger();
    let n = 0;
    const endpoint = withIdempotency(
      async () => {
        if (++n === 1) throw new Error('db down');
        return new Response('ok', { status: 201 });
      },
      { idem: createIdem({ store: memoryStore() }), handlerErrors: 'problem', logger },
    );
    const first = await endpoint(post('k'));
    expect(first.status).toBe(500);
    expect(((await first.json()) as { type: string }).type).toBe('https://idem.dev/problems/handler-error');
    expect((await endpoint(post('k'))).status).toBe(201);
    expect(logger.lines.some((l) => l.includes('the handler threw'))).toBe(true);
  });

  it('the handler sees attempt, mayHaveRun and a downstream key stable for the record', async () => {
    const seen: unknown[] = [];
    const endpoint = withIdempotency(
      async (req) => {
        const info = idempotencyInfo(req);
        seen.push({ attempt: info?.attempt, mayHaveRun: info?.mayHaveRun, dk: info?.downstreamKey });
        return new Response(null, { status: 429 }); // released: runs again
      },
      { idem: createIdem({ store: memoryStore() }) },
    );
    await endpoint(post('k'));
    await endpoint(post('k'));
    expect(seen).toHaveLength(2);
    expect(seen[0]).toEqual(seen[1]);
    expect(seen[0]).toMatchObject({ attempt: 1, mayHaveRun: false });
  });

  it('warns once when keys are global (scope returns a constant like "global")', async () => {
    const logger = recordingLogger();
    const endpoint = withIdempotency(async () => new Response('ok'), {
      idem: createIdem({ store: memoryStore() }),
      scope: () => 'global',
      logger,
    });
    await endpoint(post('a'));
    await endpoint(post('b'));
    expect(logger.lines.filter((l) => l.includes('keys are global'))).toHaveLength(1);
    const logger2 = recordingLogger();
    withIdempotency(async () => new Response('ok'), {
      idem: createIdem({ store: memoryStore() }),
      dangerouslyAllowGlobalKeys: true,
      logger: logger2,
    });
    expect(logger2.lines.filter((l) => l.includes('keys are global'))).toHaveLength(1);
  });

  it.each([
    ['throws', 'throw'],
    ['answers a released 429', 'release'],
  ])('wait mode: a duplicate of a request whose handler %s runs the handler itself', async (_, mode) => {
    let calls = 0;
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    const endpoint = withIdempotency(
      async () => {
        const n = ++calls;
        if (n > 1) return new Response(`run ${n}`, { status: 201 });
        await gate;
        if (mode === 'throw') throw new Error('boom');
        return new Response('slow down', { status: 429 });
      },
      {
        idem: createIdem({ store: memoryStore() }),
        onInProgress: 'wait',
        handlerErrors: 'problem',
        logger: recordingLogger(),
      },
    );
    const first = endpoint(post('k'));
    await pause(20);
    const second = endpoint(post('k'));
    await pause(20);
    openGate();
    const [a, b] = await Promise.all([first, second]);
    expect(a.status).toBe(mode === 'throw' ? 500 : 429);
    expect(b.status).toBe(201);
    expect(await b.text()).toBe('run 2');
    expect(b.headers.get('idempotent-replayed')).toBeNull();
    expect(calls).toBe(2);
  });

  it('a client that abandons a streamed response does not stop it being stored in full', async () => {
    let calls = 0;
    const endpoint = withIdempotency(
      async () => {
        calls++;
        const body = new ReadableStream<Uint8Array>({
          async start(c) {
            for (let i = 0; i < 5; i++) {
              c.enqueue(new TextEncoder().encode(`data: ${i}\n\n`));
              await pause(10);
            }
            c.close();
          },
        });
        return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
      },
      { idem: createIdem({ store: memoryStore() }), onInProgress: 'wait' },
    );
    const first = await endpoint(post('s'));
    const reader = first.body!.getReader();
    await reader.read();
    await reader.cancel();
    const replay = await endpoint(post('s')); // waits for the stream to finish, then replays it
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.text()).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n');
    expect(calls).toBe(1);
  });

  it('a body that fails mid-stream is stored as 500 response-incomplete (never re-run)', async () => {
    let calls = 0;
    const logger = recordingLogger();
    const endpoint = withIdempotency(
      async () => {
        calls++;
        const body = new ReadableStream<Uint8Array>({
          async start(c) {
            c.enqueue(new TextEncoder().encode('partial'));
            await pause(5);
            c.error(new Error('upstream reset'));
          },
        });
        return new Response(body, { status: 200 });
      },
      { idem: createIdem({ store: memoryStore() }), logger },
    );
    const first = await endpoint(post('x'));
    await expect(first.text()).rejects.toThrow();
    const again = await endpoint(post('x'));
    expect(again.status).toBe(500);
    expect(again.headers.get('x-should-retry')).toBe('false');
    expect(((await again.json()) as { type: string }).type).toBe(
      'https://idem.dev/problems/response-incomplete',
    );
    expect(calls).toBe(1);
  });

  it('the first response finishes only once its outcome is stored: an immediate retry replays', async () => {
    const base = memoryStore();
    const slowComplete: Store = {
      ...base,
      name: 'slow',
      complete: async (...args) => {
        await pause(150);
        return base.complete(...args);
      },
    };
    const endpoint = withIdempotency(async () => new Response('done', { status: 201 }), {
      idem: createIdem({ store: slowComplete }),
    });
    expect(await (await endpoint(post('k'))).text()).toBe('done');
    const again = await endpoint(post('k'));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });

  it('a store write that fails after the response left is logged; the client sees a broken response', async () => {
    const base = memoryStore();
    const failing: Store = {
      ...base,
      complete: async () => {
        throw new Error('disk full');
      },
    };
    const logger = recordingLogger();
    const endpoint = withIdempotency(async () => new Response('made', { status: 201 }), {
      idem: createIdem({ store: failing }),
      logger,
      onInProgress: 'reject',
    });
    const res = await endpoint(post('k'));
    await expect(res.text()).rejects.toThrow(/outcome/);
    expect(logger.lines.some((l) => l.includes('the outcome was not stored'))).toBe(true);
    // the key stays claimed (the action ran): a retry is told to wait, never re-run
    expect((await endpoint(post('k'))).status).toBe(409);
  });
});

describe('hardening (the web pipeline)', () => {
  const slowEndpoint = (options: Record<string, unknown>, ms = 300, status = 201) => {
    let runs = 0;
    const endpoint = withIdempotency(
      async () => {
        runs++;
        await pause(ms);
        return Response.json({ run: runs }, { status });
      },
      { idem: createIdem({ store: memoryStore() }), logger: recordingLogger(), ...options },
    );
    return { endpoint, runs: () => runs };
  };

  it('409 Retry-After is a short estimate (≤ 2 s by default) with retry-after-ms', async () => {
    const { endpoint } = slowEndpoint({ onInProgress: 'reject', lease: '30s' }, 1500);
    const first = endpoint(post('ra'));
    await pause(50);
    const dup = await endpoint(post('ra'));
    expect(dup.status).toBe(409);
    expect(Number(dup.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(dup.headers.get('retry-after'))).toBeLessThanOrEqual(2);
    const ms = Number(dup.headers.get('retry-after-ms'));
    expect(ms).toBeGreaterThanOrEqual(1000);
    expect(ms).toBeLessThanOrEqual(2000);
    await (await first).text();
  });

  it("'wait' is the default: concurrent duplicates become one execution", async () => {
    const { endpoint, runs } = slowEndpoint({}, 200);
    const all = await Promise.all([endpoint(post('w')), endpoint(post('w')), endpoint(post('w'))]);
    expect(runs()).toBe(1);
    const bodies = await Promise.all(all.map((r) => r.text()));
    expect(new Set(bodies).size).toBe(1);
    for (const r of all) expect(r.status).toBe(201);
  });

  it('a waiting duplicate whose client went away runs nothing', async () => {
    const { endpoint, runs } = slowEndpoint({ onInProgress: 'wait' }, 300, 503);
    const first = endpoint(post('gone'));
    await pause(30);
    const client = new AbortController();
    const dup = endpoint(new Request(post('gone'), { signal: client.signal })).catch(() => undefined);
    await pause(50);
    client.abort();
    expect((await first).status).toBe(503); // released: a waiter still there would run it
    await dup;
    await pause(100);
    expect(runs()).toBe(1);
  });

  it('a stored live 5xx says x-should-retry: false; a released 503 does not', async () => {
    const stored = await slowEndpoint({}, 0, 500).endpoint(post('s500'));
    expect(stored.headers.get('x-should-retry')).toBe('false');
    const released = await slowEndpoint({}, 0, 503).endpoint(post('s503'));
    expect(released.headers.get('x-should-retry')).toBeNull();
  });

  it.each([
    ['a lone surrogate', '{"a":"\\ud800"}'],
    ['JSON nested 10 000 deep', `${'['.repeat(10_000)}${']'.repeat(10_000)}`],
  ])('a body with %s is a 4xx problem', async (_, body) => {
    const { endpoint } = slowEndpoint({}, 0);
    const r = await endpoint(post('bad-body', body));
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(r.headers.get('content-type')).toBe('application/problem+json');
  });

  it('an outcome the store refuses ends the live stream as broken, and is logged', async () => {
    const base = memoryStore();
    const refusing: Store = { ...base, complete: () => Promise.reject(new Error('store down (test)')) };
    const logger = recordingLogger();
    const endpoint = withIdempotency(async () => Response.json({ ok: true }, { status: 201 }), {
      idem: createIdem({ store: refusing }),
      logger,
    });
    const r = await endpoint(post('unstored'));
    const read = await r.text().then(
      () => 'complete',
      () => 'broken',
    );
    expect(read).toBe('broken');
    expect(logger.lines.join('\n')).toMatch(/error: .*not stored/);
  });

  it('scope: credentials are normalized (scheme case, whitespace); proxy-authorization counts', async () => {
    const { endpoint, runs } = slowEndpoint({}, 0);
    await endpoint(post('n', '{"a":1}', { authorization: 'Bearer tok' }));
    const again = await endpoint(post('n', '{"a":1}', { authorization: 'bearer   tok' }));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    await endpoint(post('p', '{"a":1}', { 'proxy-authorization': 'Basic YQ==' }));
    await endpoint(post('p', '{"a":1}', { 'proxy-authorization': 'Basic Yg==' }));
    expect(runs()).toBe(3);
  });

  it('scope: only the configured cookies count', async () => {
    const { endpoint, runs } = slowEndpoint({ scopeCookies: ['session'] }, 0);
    await endpoint(post('c', '{"a":1}', { cookie: 'session=s1' }));
    const again = await endpoint(post('c', '{"a":1}', { cookie: '_ga=1; session=s1' }));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(runs()).toBe(1);
  });

  it("scope: 'required' answers 401 without credentials", async () => {
    const { endpoint, runs } = slowEndpoint({ scope: 'required' }, 0);
    const r = await endpoint(post('anon'));
    expect(r.status).toBe(401);
    expect(((await r.json()) as { type: string }).type).toMatch(/missing-credentials$/);
    expect(runs()).toBe(0);
    expect((await endpoint(post('anon', '{"a":1}', { 'x-api-key': 'k' }))).status).toBe(201);
  });

  it('options are validated, not clamped: a lease under 50 ms is refused', () => {
    const idem = createIdem({ store: memoryStore() });
    expect(() => withIdempotency(async () => new Response(), { idem, lease: 10 })).toThrow(/lease/);
    expect(() => withIdempotency(async () => new Response(), { idem, waitTimeout: -1 })).toThrow(
      /waitTimeout/,
    );
    expect(() =>
      withIdempotency(async () => new Response(), { store: memoryStore(), maxRetryAfter: '5m' }),
    ).toThrow(/maxRetryAfter/);
  });
});

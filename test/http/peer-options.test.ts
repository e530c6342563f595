/**
 * The options users of other idempotency libraries expect: key length, replay and
 * should-retry header names, skipRequest, a custom fingerprint, event hooks, a custom error
 * renderer, and one namespace for every spelling of "global".
 */
import { createIdem, InvalidOptionError, memoryStore } from 'idem';
import { type IdempotencyOptions, withIdempotency } from 'idem/http';
import { describe, expect, it } from 'vitest';

const post = (key: string, body = '{"a":1}', headers: Record<string, string> = {}) =>
  new Request('http://x/pay', {
    method: 'POST',
    headers: { 'idempotency-key': key, 'content-type': 'application/json', ...headers },
    body,
  });

function counted(options: Partial<IdempotencyOptions>, status = 201, ms = 0) {
  let runs = 0;
  const idem = options.idem ?? createIdem({ store: memoryStore() });
  const endpoint = withIdempotency(
    async () => {
      runs++;
      if (ms) await new Promise((r) => setTimeout(r, ms));
      return Response.json({ runs }, { status });
    },
    { ...options, idem },
  );
  return { endpoint, runs: () => runs, idem };
}

const silent = { warn() {}, error() {} };

describe('maxKeyLength', () => {
  it('defaults to 255: a longer key is 400 invalid-key', async () => {
    const { endpoint, runs } = counted({});
    expect((await endpoint(post('k'.repeat(255)))).status).toBe(201);
    const r = await endpoint(post('k'.repeat(256)));
    expect(r.status).toBe(400);
    expect(((await r.json()) as { type: string }).type).toMatch(/invalid-key$/);
    expect(runs()).toBe(1);
  });

  it('a lower limit refuses longer keys', async () => {
    const { endpoint } = counted({ maxKeyLength: 64 });
    expect((await endpoint(post('k'.repeat(65)))).status).toBe(400);
    expect((await endpoint(post('k'.repeat(64)))).status).toBe(201);
  });

  it('can be raised up to 1024: long keys are replayed and kept apart', async () => {
    const { endpoint, runs } = counted({ maxKeyLength: 1024 });
    const long = 'k'.repeat(1000);
    expect((await endpoint(post(long))).status).toBe(201);
    const again = await endpoint(post(long));
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await endpoint(post(`${'k'.repeat(999)}j`))).headers.get('idempotent-replayed')).toBeNull();
    expect(runs()).toBe(2);
    expect((await endpoint(post('k'.repeat(1025)))).status).toBe(400);
  });

  it.each([0, 1025, 1.5, '255'])('refuses maxKeyLength %o', (value) => {
    expect(() => counted({ maxKeyLength: value as number })).toThrow(InvalidOptionError);
  });
});

describe('replay and should-retry header names', () => {
  it('replayHeader renames the marker; a list sends several spellings', async () => {
    const one = counted({ replayHeader: 'X-Replayed' });
    await one.endpoint(post('a'));
    const r1 = await one.endpoint(post('a'));
    expect(r1.headers.get('x-replayed')).toBe('true');
    expect(r1.headers.get('idempotent-replayed')).toBeNull();
    const both = counted({ replayHeader: ['Idempotent-Replayed', 'Idempotency-Replayed'] });
    await both.endpoint(post('a'));
    const r2 = await both.endpoint(post('a'));
    expect(r2.headers.get('idempotent-replayed')).toBe('true');
    expect(r2.headers.get('idempotency-replayed')).toBe('true');
  });

  it('shouldRetryHeaders go on a stored live 5xx, its replay and idem problems', async () => {
    const { endpoint } = counted({ shouldRetryHeaders: ['x-should-retry', 'stripe-should-retry'] }, 500);
    for (const r of [await endpoint(post('s')), await endpoint(post('s'))]) {
      expect(r.status).toBe(500);
      expect(r.headers.get('stripe-should-retry')).toBe('false');
      expect(r.headers.get('x-should-retry')).toBe('false');
    }
    const mismatch = await endpoint(post('s', '{"a":2}'));
    expect(mismatch.status).toBe(422);
    expect(mismatch.headers.get('stripe-should-retry')).toBe('false');
  });

  it('by default only x-should-retry is sent', async () => {
    const { endpoint } = counted({}, 500);
    const r = await endpoint(post('d'));
    expect(r.headers.get('x-should-retry')).toBe('false');
    expect(r.headers.get('stripe-should-retry')).toBeNull();
  });

  it.each([
    { replayHeader: 'bad header' },
    { shouldRetryHeaders: ['ok', 'no pe'] },
    { shouldRetryHeaders: 'x' },
  ])('refuses %o', (o) => {
    expect(() => counted(o as Partial<IdempotencyOptions>)).toThrow(InvalidOptionError);
  });
});

describe('skipRequest', () => {
  it('a skipped request passes through untouched, even with a key; may be async', async () => {
    const { endpoint, runs } = counted({ skipRequest: async (req) => req.headers.get('x-internal') === '1' });
    await endpoint(post('k', '{}', { 'x-internal': '1' }));
    const r = await endpoint(post('k', '{}', { 'x-internal': '1' }));
    expect(r.headers.get('idempotent-replayed')).toBeNull();
    expect(runs()).toBe(2);
    await endpoint(post('k'));
    expect((await endpoint(post('k'))).headers.get('idempotent-replayed')).toBe('true');
    expect(runs()).toBe(3);
  });
});

describe('fingerprint', () => {
  it('a custom fingerprint replaces the default', async () => {
    const fingerprint = async (_req: Request, body: Uint8Array) =>
      String(JSON.parse(new TextDecoder().decode(body)).amount);
    const { endpoint, runs } = counted({ fingerprint });
    await endpoint(post('f', '{"amount":5,"trace":"a"}'));
    const same = await endpoint(post('f', '{"amount":5,"trace":"b"}'));
    expect(same.headers.get('idempotent-replayed')).toBe('true');
    expect((await endpoint(post('f', '{"amount":6}'))).status).toBe(422);
    expect(runs()).toBe(1);
  });

  it('a fingerprint that returns no string is a TypeError to the framework', async () => {
    const { endpoint, runs } = counted({ fingerprint: () => 42 as unknown as string });
    await expect(endpoint(post('n'))).rejects.toThrow(TypeError);
    expect(runs()).toBe(0);
  });
});

describe('onEvent', () => {
  it('reports miss, hit and conflict with the request; a throwing hook is logged, never breaks', async () => {
    const events: string[] = [];
    const errors: string[] = [];
    const { endpoint } = counted({
      logger: { warn() {}, error: (m) => errors.push(m) },
      onEvent: async (e) => {
        events.push(`${e.type}:${e.key}:${new URL(e.request.url).pathname}`);
        throw new Error('hook failed');
      },
    });
    expect((await endpoint(post('e'))).status).toBe(201);
    expect((await endpoint(post('e'))).status).toBe(201);
    expect((await endpoint(post('e', '{"a":2}'))).status).toBe(422);
    await new Promise((r) => setTimeout(r, 10));
    expect(events).toEqual(['miss:e:/pay', 'hit:e:/pay', 'conflict:e:/pay']);
    expect(errors.length).toBe(3);
  });

  it('a 409 in progress is a conflict event', async () => {
    const events: string[] = [];
    const { endpoint } = counted(
      { onInProgress: 'reject', onEvent: (e) => void events.push(e.type) },
      201,
      100,
    );
    const first = endpoint(post('p'));
    await new Promise((r) => setTimeout(r, 20));
    expect((await endpoint(post('p'))).status).toBe(409);
    await first;
    expect(events).toEqual(['miss', 'conflict']);
  });
});

describe('onError', () => {
  it('renders idem problems in the app own shape, keeping idem headers', async () => {
    const { endpoint } = counted({
      onError: (problem, request) =>
        Response.json(
          { message: problem.detail, kind: problem.code, path: new URL(request.url).pathname },
          {
            status: problem.status,
          },
        ),
    });
    const r = await endpoint(post('k'.repeat(300)));
    expect(r.status).toBe(400);
    expect(await r.json()).toEqual({
      message: expect.any(String),
      kind: 'idempotency_key_invalid',
      path: '/pay',
    });
    expect(r.headers.get('x-should-retry')).toBe('false');
  });

  it('a renderer that throws falls back to problem+json, logged', async () => {
    const errors: string[] = [];
    const { endpoint } = counted({
      logger: { warn() {}, error: (m) => errors.push(m) },
      onError: () => {
        throw new Error('renderer broke');
      },
    });
    const r = await endpoint(post('k'.repeat(300)));
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toBe('application/problem+json');
    expect(errors.length).toBe(1);
  });
});

describe('global scope spellings', () => {
  const spellings: [string, Partial<IdempotencyOptions>][] = [
    ["''", { scope: () => '' }],
    ["'global'", { scope: () => 'global' }],
    ["'*'", { scope: () => '*' }],
    ['undefined', { scope: () => undefined }],
    ['null', { scope: () => null }],
    ['[]', { scope: () => [] }],
    ['dangerouslyAllowGlobalKeys', { dangerouslyAllowGlobalKeys: true }],
  ];
  it('all land in one namespace: a key written under one is replayed under every other', async () => {
    const idem = createIdem({ store: memoryStore() });
    let runs = 0;
    const endpoints = spellings.map(([, o]) =>
      withIdempotency(async () => Response.json({ runs: ++runs }, { status: 201 }), {
        ...o,
        idem,
        logger: silent,
      }),
    );
    for (const [i, endpoint] of endpoints.entries()) {
      const r = await endpoint(post('shared', '{}', { authorization: `Bearer user-${i}` }));
      expect(r.status, spellings[i]?.[0]).toBe(201);
      if (i > 0) expect(r.headers.get('idempotent-replayed'), spellings[i]?.[0]).toBe('true');
    }
    expect(runs).toBe(1);
  });
});

describe('header policy', () => {
  it('a response header echoing the downstream key shows the client key, live and replayed', async () => {
    const { idempotencyInfo } = await import('idem/http');
    const endpoint = withIdempotency(
      async (req) =>
        Response.json(
          { ok: true },
          {
            status: 201,
            headers: { 'idempotency-key': idempotencyInfo(req)?.downstreamKey ?? '', 'set-cookie': 's=1' },
          },
        ),
      { idem: createIdem({ store: memoryStore() }), replayHeaders: ['idempotency-key'] },
    );
    const live = await endpoint(post('mine'));
    const replay = await endpoint(post('mine'));
    expect(live.headers.get('idempotency-key')).toBe('mine');
    expect(live.headers.get('set-cookie')).toBe('s=1');
    expect(replay.headers.get('idempotency-key')).toBe('mine');
    expect(replay.headers.get('set-cookie')).toBeNull();
  });
});

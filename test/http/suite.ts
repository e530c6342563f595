/**
 * The behaviour table (docs/http/behaviour.md, reference §6.4/§6.5), row by row, run against
 * every adapter: `testHttpAdapter(harness, { store })` from each adapter's test file.
 */
import { createIdem, memoryStore, type Store } from 'idem';
import type { IdempotencyOptions } from 'idem/http';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AdapterHarness,
  downStore,
  pause,
  recordingLogger,
  type SendInit,
  type TestApp,
  type TestReply,
  type TestRequest,
} from './harness.ts';
import { suiteMore } from './suite-more.ts';

export interface SuiteOptions {
  /** A fresh store per test. Default memoryStore(). */
  store?: () => Store;
  label?: string;
}

const P = 'https://idem.dev/problems/';
export const jsonType = (): [string, string][] => [['content-type', 'application/json']];

/** One app under test, its handler's call log and a gate for in-flight tests. */
export interface Rig {
  app: TestApp;
  calls: TestRequest[];
  /** Resolves the gate `/slow` waits on. */
  open(): void;
  /** Resolves once `/slow` was entered `n` times. */
  entered(n?: number): Promise<void>;
  post(
    path: string,
    key: string | undefined,
    body?: unknown,
    extra?: [string, string][],
  ): ReturnType<TestApp['send']>;
  send: TestApp['send'];
}

export function testHttpAdapter(harness: AdapterHarness, suite: SuiteOptions = {}) {
  const newStore = suite.store ?? (() => memoryStore());
  const apps: TestApp[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.close()));
  });

  async function rig(options: Partial<IdempotencyOptions> = {}, store: Store = newStore()): Promise<Rig> {
    const calls: TestRequest[] = [];
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    let enteredCount = 0;
    const waiters: { n: number; resolve: () => void }[] = [];
    const handler = async (req: TestRequest): Promise<TestReply> => {
      calls.push(req);
      const n = calls.length;
      const [, route, arg] = req.path.split('/');
      switch (route) {
        case 'slow': {
          enteredCount++;
          for (const w of waiters) if (enteredCount >= w.n) w.resolve();
          await gate;
          return { status: 201, headers: jsonType(), body: JSON.stringify({ n, at: Date.now() }) };
        }
        case 'status':
          return {
            status: Number(arg),
            headers: jsonType(),
            body: JSON.stringify({ n, status: Number(arg) }),
          };
        case 'empty':
          return { status: 204, headers: [['etag', `"e${n}"`]] };
        case 'binary':
          return {
            status: 200,
            headers: [['content-type', 'application/octet-stream']],
            body: noise(70_000, n),
          };
        case 'sse':
          return {
            status: 200,
            headers: [
              ['content-type', 'text/event-stream'],
              ['cache-control', 'no-cache'],
            ],
            chunks: [`id: 1\ndata: {"n":${n}}\n\n`, 'id: 2\ndata: é ✓ 🚀\n\n', 'id: 3\ndata: [DONE]\n\n'],
          };
        case 'big':
          return { status: 201, headers: [['content-type', 'text/plain']], body: 'x'.repeat(5000) };
        case 'throw':
          if (n === 1) throw new Error('boom');
          return { status: 201, headers: jsonType(), body: JSON.stringify({ n }) };
        default:
          return {
            status: 201,
            headers: [
              ['content-type', 'application/json; charset=utf-8'],
              ['location', `/things/${n}`],
              ['etag', `"v${n}"`],
              ['x-request-id', `req-${n}`],
              ['set-cookie', `session=s${n}; Path=/`],
              ['set-cookie', `other=o${n}`],
              ['x-ratelimit-remaining', '41'],
              ['retry-after', '7'],
              ['date', 'Mon, 01 Jan 2001 00:00:00 GMT'],
              ['x-custom', 'not-allow-listed'],
            ],
            body: JSON.stringify({ n, method: req.method, path: req.path, body: req.body }),
          };
      }
    };
    const idem = createIdem({ store });
    const app = await harness.start({ idem, logger: recordingLogger(), ...options }, handler);
    apps.push(app);
    return {
      app,
      calls,
      open: openGate,
      entered: (n = 1) =>
        enteredCount >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve })),
      send: (m, p, i) => app.send(m, p, i),
      post: (path, key, body = { amount: 10 }, extra = []) => {
        const headers: [string, string][] = [['content-type', 'application/json'], ...extra];
        if (key !== undefined) headers.push(['idempotency-key', key]);
        return app.send('POST', path, {
          headers,
          body: typeof body === 'string' ? body : JSON.stringify(body),
        });
      },
    };
  }

  const expectProblem = (res: Awaited<ReturnType<TestApp['send']>>, status: number, type: string) => {
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const body = res.json();
    expect(body.type).toBe(P + type);
    expect(body.status).toBe(status);
    expect(typeof body.title).toBe('string');
    return body;
  };

  describe(`${harness.name}${suite.label ? ` (${suite.label})` : ''}: behaviour table`, () => {
    it('row 1: GET and OPTIONS pass through with a key, never stored or replayed', async () => {
      const r = await rig();
      for (let i = 0; i < 2; i++) {
        const res = await r.send('GET', '/things', { headers: [['idempotency-key', 'k1']] });
        expect(res.status).toBe(201);
        expect(res.headers.get('idempotent-replayed')).toBeNull();
      }
      await r.send('OPTIONS', '/things', { headers: [['idempotency-key', 'k1']] });
      expect(r.calls.map((c) => c.method)).toEqual(['GET', 'GET', 'OPTIONS']);
      // the key was never claimed: a POST with it runs
      expect((await r.post('/things', 'k1')).headers.get('idempotent-replayed')).toBeNull();
    });

    it('row 2: POST without a key passes through when the key is optional', async () => {
      const r = await rig();
      const a = await r.post('/things', undefined);
      const b = await r.post('/things', undefined);
      expect([a.status, b.status]).toEqual([201, 201]);
      expect(r.calls).toHaveLength(2);
      expect(b.headers.get('idempotent-replayed')).toBeNull();
    });

    it('row 3: a required key that is missing → 400 missing-key with Link describedby', async () => {
      const r = await rig({ required: true, docsUrl: 'https://docs.example/idempotency' });
      const res = await r.post('/things', undefined);
      expectProblem(res, 400, 'missing-key');
      expect(res.headers.get('link')).toBe('<https://docs.example/idempotency>; rel="describedby"');
      expect(r.calls).toHaveLength(0);
      // safe methods still pass without a key
      expect((await r.send('GET', '/things')).status).toBe(201);
    });

    it('row 4: malformed, repeated or oversize keys → 400 invalid-key, handler not called', async () => {
      const r = await rig();
      const bad = [
        'has space',
        '"unterminated',
        '"bad\\escape"',
        'a,b',
        '"a", "b"',
        '"a";p=1',
        '',
        'caf\u00e9',
        'k'.repeat(256),
      ];
      for (const key of bad) {
        const res = await r.post('/things', key);
        expectProblem(res, 400, 'invalid-key');
        expect(res.headers.get('x-should-retry')).toBe('false');
      }
      const twoLines = await r.send('POST', '/things', {
        headers: [
          ['content-type', 'application/json'],
          ['idempotency-key', 'one'],
          ['idempotency-key', 'two'],
        ],
        body: '{}',
      });
      expectProblem(twoLines, 400, 'invalid-key');
      expect(r.calls).toHaveLength(0);
      expect((await r.post('/things', 'k'.repeat(255))).status).toBe(201);
    });

    it('row 4: "k" (sf-string) and k (bare) are the same key; escapes are unescaped', async () => {
      const r = await rig();
      expect((await r.post('/things', '"key-1"')).headers.get('idempotent-replayed')).toBeNull();
      expect((await r.post('/things', 'key-1')).headers.get('idempotent-replayed')).toBe('true');
      await r.post('/things', '"a\\"b\\\\c"');
      expect((await r.post('/things', 'a"b\\c')).headers.get('idempotent-replayed')).toBe('true');
      expect(r.calls).toHaveLength(2);
    });

    it('row 5: a body over the limit → 413 payload-too-large, handler not called', async () => {
      const r = await rig({ bodyLimit: 1024 });
      const big = JSON.stringify({ pad: 'x'.repeat(3000) });
      expectProblem(await r.post('/things', 'k', big), 413, 'payload-too-large');
      const streamed = await r.send('POST', '/things', {
        headers: [
          ['content-type', 'application/json'],
          ['idempotency-key', 'k2'],
        ],
        body: big,
        stream: true,
      });
      expectProblem(streamed, 413, 'payload-too-large');
      expect(r.calls).toHaveLength(0);
      expect((await r.post('/things', 'k3', { small: true })).status).toBe(201);
    });

    it('row 6: a new key runs the handler and answers its response, unmarked', async () => {
      const r = await rig();
      const res = await r.post('/things', 'fresh');
      expect(res.status).toBe(201);
      expect(res.headers.get('idempotent-replayed')).toBeNull();
      expect(res.headers.get('location')).toBe('/things/1');
      expect(res.headers.get('x-custom')).toBe('not-allow-listed');
      expect(res.headers.get('set-cookie')).toContain('session=s1');
      expect(r.calls).toHaveLength(1);
      expect(r.calls[0]?.info?.key).toBe('fresh');
      expect(r.calls[0]?.info?.downstreamKey).toMatch(/^idem_/);
    });

    it('row 7: a completed key replays status, allow-listed headers and the exact body', async () => {
      const r = await rig();
      const first = await r.post('/things', 'replay-me');
      const again = await r.post('/things', 'replay-me');
      expect(r.calls).toHaveLength(1);
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.body).toEqual(first.body);
      for (const h of ['content-type', 'location', 'etag', 'x-request-id']) {
        expect(again.headers.get(h)).toBe(first.headers.get(h));
      }
      for (const h of ['set-cookie', 'x-ratelimit-remaining', 'retry-after', 'x-custom']) {
        expect(again.headers.get(h)).toBeNull();
      }
      expect(again.headers.get('date')).not.toBe('Mon, 01 Jan 2001 00:00:00 GMT');
      if (!harness.serverDate) expect(again.headers.get('date')).toBeNull();
      expect(again.headers.get('x-should-retry')).toBeNull();
      expect(Number(again.headers.get('content-length') ?? again.body.byteLength)).toBe(
        first.body.byteLength,
      );
    });

    it('row 8: same key, other payload → 422 fingerprint-mismatch; the record is untouched', async () => {
      const r = await rig();
      await r.post('/things', 'k', { amount: 10, currency: 'EUR' });
      const other = await r.post('/things', 'k', { amount: 99, currency: 'EUR' });
      expectProblem(other, 422, 'fingerprint-mismatch');
      expect(other.headers.get('x-should-retry')).toBe('false');
      expectProblem(
        await r.post('/elsewhere', 'k', { amount: 10, currency: 'EUR' }),
        422,
        'fingerprint-mismatch',
      );
      expectProblem(
        await r.post('/things?x=1', 'k', { amount: 10, currency: 'EUR' }),
        422,
        'fingerprint-mismatch',
      );
      const reordered = await r.send('POST', '/things', {
        headers: [
          ['content-type', 'application/json'],
          ['idempotency-key', 'k'],
        ],
        body: '{ "currency": "EUR",\n  "amount": 10 }',
      });
      expect(reordered.status).toBe(201);
      expect(reordered.headers.get('idempotent-replayed')).toBe('true');
      expect(r.calls).toHaveLength(1);
    });

    it('row 9: same key while the first runs → 409 conflict with Retry-After in [1, 60]', async () => {
      const r = await rig({ onInProgress: 'reject' }); // the default waits up to 30 s first
      const first = r.post('/slow', 'busy');
      await r.entered();
      const second = await r.post('/slow', 'busy');
      const body = expectProblem(second, 409, 'conflict');
      expect(body.detail).toBeTypeOf('string');
      const retryAfter = Number(second.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      r.open();
      expect((await first).status).toBe(201);
      expect((await r.post('/slow', 'busy')).headers.get('idempotent-replayed')).toBe('true');
      expect(r.calls).toHaveLength(1);
    });

    it('row 9b: wait mode answers the duplicate with the first response once it completes', async () => {
      const r = await rig({ onInProgress: 'wait', waitTimeout: '10s' });
      const first = r.post('/slow', 'w');
      await r.entered();
      const second = r.post('/slow', 'w');
      await pause(50);
      r.open();
      const [a, b] = await Promise.all([first, second]);
      expect(a.status).toBe(201);
      expect(b.status).toBe(201);
      expect(b.body).toEqual(a.body);
      expect(b.headers.get('idempotent-replayed')).toBe('true');
      expect(r.calls).toHaveLength(1);
    });

    it('row 9b: wait mode gives up after waitTimeout with 409', async () => {
      const r = await rig({ onInProgress: 'wait', waitTimeout: '200ms' });
      const first = r.post('/slow', 'w');
      await r.entered();
      expectProblem(await r.post('/slow', 'w'), 409, 'conflict');
      r.open();
      await first;
    });

    it('row 10: store unavailable → 503 store-unavailable (fail closed), handler not called', async () => {
      const r = await rig({}, downStore());
      const res = await r.post('/things', 'k');
      expectProblem(res, 503, 'store-unavailable');
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(r.calls).toHaveLength(0);
      expect((await r.post('/things', undefined)).status).toBe(201); // no key: not affected
    });

    it('row 10b: onStoreError "open" runs the handler, marked Idempotency-Status: bypassed', async () => {
      const r = await rig({ onStoreError: 'open' }, downStore());
      const res = await r.post('/things', 'k');
      expect(res.status).toBe(201);
      expect(res.headers.get('idempotency-status')).toBe('bypassed');
      expect(r.calls[0]?.info?.bypassed).toBe(true);
    });
  });

  suiteMore(harness, suite, rig, expectProblem);
}

/** Deterministic bytes that are not valid UTF-8, different per `seed`. */
export function noise(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) & 0xff;
  }
  out[0] = 0xff;
  out[1] = 0xfe;
  return out;
}

export type RigFactory = (options?: Partial<IdempotencyOptions>, store?: Store) => Promise<Rig>;
export type ExpectProblem = (
  res: Awaited<ReturnType<TestApp['send']>>,
  status: number,
  type: string,
) => Record<string, unknown>;
export type { SendInit };

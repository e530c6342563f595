/**
 * The rest of the shared HTTP suite: outcome policy (§6.5), scope, fingerprint options,
 * real concurrency, and body fidelity (binary, SSE, body-less, oversize outcomes).
 */
import { createIdem, memoryStore } from 'idem';
import { defaultOutcomePolicy } from 'idem/http';
import { describe, expect, it } from 'vitest';
import type { AdapterHarness } from './harness.ts';
import type { ExpectProblem, RigFactory, SuiteOptions } from './suite.ts';

export function suiteMore(
  harness: AdapterHarness,
  suite: SuiteOptions,
  rig: RigFactory,
  expectProblem: ExpectProblem,
) {
  const title = `${harness.name}${suite.label ? ` (${suite.label})` : ''}`;

  describe(`${title}: outcome policy`, () => {
    it.each([401, 403, 408, 409, 425, 429, 503, 529])(
      'releases %i: a retry runs the handler again',
      async (status) => {
        const r = await rig();
        const a = await r.post(`/status/${status}`, `k${status}`);
        const b = await r.post(`/status/${status}`, `k${status}`);
        expect([a.status, b.status]).toEqual([status, status]);
        expect(b.headers.get('idempotent-replayed')).toBeNull();
        expect(r.calls).toHaveLength(2);
      },
    );

    it.each([200, 202, 301, 400, 404, 410, 422, 500, 502, 504])(
      'stores %i and replays it',
      async (status) => {
        const r = await rig();
        const a = await r.post(`/status/${status}`, `k${status}`);
        const b = await r.post(`/status/${status}`, `k${status}`);
        expect(b.status).toBe(status);
        expect(b.body).toEqual(a.body);
        expect(b.headers.get('idempotent-replayed')).toBe('true');
        expect(b.headers.get('x-should-retry')).toBe(status >= 500 ? 'false' : null);
        expect(r.calls).toHaveLength(1);
      },
    );

    it('outcomePolicy overrides the default per route', async () => {
      const r = await rig({ outcomePolicy: (s) => (s === 500 ? 'release' : defaultOutcomePolicy(s)) });
      await r.post('/status/500', 'k');
      await r.post('/status/500', 'k');
      expect(r.calls).toHaveLength(2);
    });

    it('a stored response is replayed after the policy changes to release its status', async () => {
      const store = (suite.store ?? memoryStore)();
      const before = await rig({}, store);
      const a = await before.post('/status/500', 'changed');
      expect(a.status).toBe(500);
      // the route is redeployed with a policy that releases 500s; the record stays in the store
      const after = await rig(
        { outcomePolicy: (s) => (s === 500 ? 'release' : defaultOutcomePolicy(s)) },
        store,
      );
      const b = await after.post('/status/500', 'changed');
      expect(b.status).toBe(500);
      expect(b.headers.get('idempotent-replayed')).toBe('true');
      expect(b.body).toEqual(a.body);
      expect(before.calls.length + after.calls.length).toBe(1);
    });

    it('a handler that throws releases the key: the retry runs and is stored', async () => {
      const r = await rig();
      const a = await r.post('/throw', 'k');
      expect(a.status).toBe(500);
      expect(a.headers.get('idempotent-replayed')).toBeNull();
      const b = await r.post('/throw', 'k');
      expect(b.status).toBe(201);
      const c = await r.post('/throw', 'k');
      expect(c.headers.get('idempotent-replayed')).toBe('true');
      expect(c.body).toEqual(b.body);
      expect(r.calls).toHaveLength(2);
    });

    it('PUT is honoured only when configured', async () => {
      const off = await rig();
      await off.send('PUT', '/things', { headers: [['idempotency-key', 'p']], body: 'x' });
      await off.send('PUT', '/things', { headers: [['idempotency-key', 'p']], body: 'x' });
      expect(off.calls).toHaveLength(2);
      const on = await rig({ methods: ['POST', 'PUT'] });
      await on.send('PUT', '/things', { headers: [['idempotency-key', 'p']], body: 'x' });
      const again = await on.send('PUT', '/things', { headers: [['idempotency-key', 'p']], body: 'x' });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(on.calls).toHaveLength(1);
    });
  });

  describe(`${title}: scope and fingerprint`, () => {
    it('two callers with the same key never share a record (default credential scope)', async () => {
      const r = await rig();
      const alice = await r.post('/things', 'shared', { amount: 1 }, [['authorization', 'Bearer alice']]);
      const bob = await r.post('/things', 'shared', { amount: 2 }, [['authorization', 'Bearer bob']]);
      expect([alice.status, bob.status]).toEqual([201, 201]);
      expect(bob.headers.get('idempotent-replayed')).toBeNull();
      const alice2 = await r.post('/things', 'shared', { amount: 1 }, [['authorization', 'Bearer alice']]);
      expect(alice2.headers.get('idempotent-replayed')).toBe('true');
      expect(alice2.body).toEqual(alice.body);
      expect(r.calls).toHaveLength(2);
    });

    it('a custom scope() decides who shares records', async () => {
      const r = await rig({ scope: (req) => req.headers.get('x-tenant') ?? 'none' });
      await r.post('/things', 'k', { a: 1 }, [
        ['x-tenant', 't1'],
        ['authorization', 'Bearer one'],
      ]);
      const sameTenant = await r.post('/things', 'k', { a: 1 }, [
        ['x-tenant', 't1'],
        ['authorization', 'Bearer two'],
      ]);
      expect(sameTenant.headers.get('idempotent-replayed')).toBe('true');
      const otherTenant = await r.post('/things', 'k', { a: 1 }, [['x-tenant', 't2']]);
      expect(otherTenant.headers.get('idempotent-replayed')).toBeNull();
    });

    it('excludeFields and fingerprintHeaders shape the fingerprint', async () => {
      const r = await rig({
        excludeFields: ['meta.traceId'],
        fingerprintHeaders: ['content-type', 'api-version'],
      });
      await r.post('/things', 'k', { a: 1, meta: { traceId: 't1' } }, [['api-version', '1']]);
      const newTrace = await r.post('/things', 'k', { a: 1, meta: { traceId: 't2' } }, [
        ['api-version', '1'],
      ]);
      expect(newTrace.headers.get('idempotent-replayed')).toBe('true');
      expectProblem(
        await r.post('/things', 'k', { a: 1, meta: { traceId: 't1' } }, [['api-version', '2']]),
        422,
        'fingerprint-mismatch',
      );
    });

    it('binary request bodies are fingerprinted byte for byte', async () => {
      const r = await rig();
      const bytes = new Uint8Array([0, 1, 2, 255, 254, 10]);
      const send = (b: Uint8Array) =>
        r.send('POST', '/things', {
          headers: [
            ['content-type', 'application/octet-stream'],
            ['idempotency-key', 'bin'],
          ],
          body: b,
        });
      expect((await send(bytes)).status).toBe(201);
      expect((await send(bytes.slice())).headers.get('idempotent-replayed')).toBe('true');
      expectProblem(await send(new Uint8Array([0, 1, 2, 255, 254, 11])), 422, 'fingerprint-mismatch');
    });
  });

  describe(`${title}: concurrency`, () => {
    it('reject mode: N concurrent same-key requests run the handler once; the rest get 409', async () => {
      const r = await rig({ onInProgress: 'reject' });
      let answered = 0;
      const all = Array.from({ length: 12 }, () => r.post('/slow', 'race').finally(() => answered++));
      await r.entered();
      // the 409s come back while the first request is still held at the gate
      for (let i = 0; i < 200 && answered < 11; i++) await pause(25);
      r.open();
      const res = await Promise.all(all);
      expect(r.calls).toHaveLength(1);
      expect(res.filter((x) => x.status === 201)).toHaveLength(1);
      expect(res.filter((x) => x.status === 409)).toHaveLength(11);
    });

    it('wait mode: N concurrent same-key requests all get the identical body; one execution', async () => {
      const r = await rig({ onInProgress: 'wait', waitTimeout: '10s' });
      const all = Array.from({ length: 12 }, () => r.post('/slow', 'race'));
      await r.entered();
      await pause(100);
      r.open();
      const res = await Promise.all(all);
      expect(r.calls).toHaveLength(1);
      expect(res.every((x) => x.status === 201)).toBe(true);
      for (const x of res) expect(x.body).toEqual(res[0]?.body);
      expect(res.filter((x) => x.headers.get('idempotent-replayed') === null)).toHaveLength(1);
    });

    it("wait mode set on the engine alone: a duplicate answers 409 after the engine's waitTimeout", async () => {
      const r = await rig({
        idem: createIdem({ store: (suite.store ?? memoryStore)(), onInProgress: 'wait', waitTimeout: 200 }),
      });
      const first = r.post('/slow', 'engine-wait');
      await r.entered();
      const started = Date.now();
      const second = await r.post('/slow', 'engine-wait');
      const waited = Date.now() - started;
      expectProblem(second, 409, 'conflict');
      expect(waited).toBeGreaterThanOrEqual(180);
      expect(waited).toBeLessThan(2000);
      r.open();
      expect((await first).status).toBe(201);
      expect(r.calls).toHaveLength(1);
    });

    it('different keys run concurrently', async () => {
      const r = await rig();
      const all = Array.from({ length: 5 }, (_, i) => r.post('/slow', `key-${i}`));
      await r.entered(5);
      r.open();
      expect((await Promise.all(all)).map((x) => x.status)).toEqual([201, 201, 201, 201, 201]);
    });
  });

  describe(`${title}: hardening`, () => {
    it('a stored live 5xx says x-should-retry: false; a released 503 does not', async () => {
      const r = await rig();
      expect((await r.post('/status/500', 'live500')).headers.get('x-should-retry')).toBe('false');
      expect((await r.post('/status/503', 'live503')).headers.get('x-should-retry')).toBeNull();
    });

    it('reject: the 409 carries a short Retry-After and retry-after-ms, not the lease', async () => {
      const r = await rig({ onInProgress: 'reject', lease: '30s' });
      const first = r.post('/slow', 'short-retry');
      await r.entered();
      const dup = await r.post('/slow', 'short-retry');
      expect(dup.status).toBe(409);
      expect(Number(dup.headers.get('retry-after'))).toBeLessThanOrEqual(2);
      expect(Number(dup.headers.get('retry-after-ms'))).toBeGreaterThanOrEqual(1000);
      r.open();
      await first;
    });

    it("scope: 'required' answers 401 without credentials; normalized credentials keep one record", async () => {
      const r = await rig({ scope: 'required' });
      const anon = await r.post('/status/201', 'creds');
      expect(anon.status).toBe(401);
      expectProblem(anon, 401, 'missing-credentials');
      await r.post('/status/201', 'creds', undefined, [['authorization', 'Bearer t']]);
      const again = await r.post('/status/201', 'creds', undefined, [['authorization', 'bearer  t']]);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(r.calls).toHaveLength(1);
    });
  });

  describe(`${title}: bodies`, () => {
    it('binary response bodies replay byte-identical', async () => {
      const r = await rig();
      const a = await r.post('/binary', 'b');
      const b = await r.post('/binary', 'b');
      expect(a.body.byteLength).toBe(70_000);
      expect(Buffer.from(b.body).equals(Buffer.from(a.body))).toBe(true);
      expect(b.headers.get('content-type')).toBe('application/octet-stream');
      expect(r.calls).toHaveLength(1);
    });

    it('an SSE-style streamed body is delivered and replayed byte-identical', async () => {
      const r = await rig();
      const a = await r.post('/sse', 's');
      const b = await r.post('/sse', 's');
      const text = a.text();
      expect(text).toBe('id: 1\ndata: {"n":1}\n\nid: 2\ndata: é ✓ 🚀\n\nid: 3\ndata: [DONE]\n\n');
      expect(Buffer.from(b.body).equals(Buffer.from(a.body))).toBe(true);
      expect(a.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(b.headers.get('content-type')).toBe(a.headers.get('content-type'));
      expect(b.headers.get('idempotent-replayed')).toBe('true');
    });

    it('a 204 is stored and replayed without a body', async () => {
      const r = await rig();
      const a = await r.post('/empty', 'e');
      const b = await r.post('/empty', 'e');
      expect([a.status, b.status]).toEqual([204, 204]);
      expect(b.body.byteLength).toBe(0);
      expect(b.headers.get('etag')).toBe('"e1"');
      expect(b.headers.get('idempotent-replayed')).toBe('true');
      expect(r.calls).toHaveLength(1);
    });

    it('a response over maxStoredBodyBytes replays status and headers, body omitted, not re-run', async () => {
      const r = await rig({ maxStoredBodyBytes: 1000 });
      const a = await r.post('/big', 'big');
      expect(a.body.byteLength).toBe(5000);
      const b = await r.post('/big', 'big');
      expect(b.status).toBe(201);
      expect(b.body.byteLength).toBe(0);
      expect(b.headers.get('idempotency-replay')).toBe('body-omitted');
      expect(r.calls).toHaveLength(1);
    });

    it('the handler reads the JSON body it was sent', async () => {
      const r = await rig();
      await r.post('/things', 'j', { amount: 10, nested: { a: [1, 2] } });
      expect(JSON.parse(r.calls[0]?.body ?? 'null')).toEqual({ amount: 10, nested: { a: [1, 2] } });
    });
  });
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The recipes of docs/migrating/express-idempotency.md, run against idem's Express middleware.
 */
import express from 'express';
import { createIdem, memoryStore } from 'idem';
import { idempotency, idempotencyErrors } from 'idem/express';
import { afterEach, describe, expect, it } from 'vitest';
import { listen, postJson } from './serve.ts';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** An app whose POST /orders counts executions; `status` picks the answer. */
async function app(options: Omit<Parameters<typeof idempotency>[0], 'idem'>, status = () => 201) {
  const counter = { runs: 0 };
  const a = express();
  a.use(express.json());
  const guard = idempotency({ idem: createIdem({ store: memoryStore() }), ...options });
  a.post('/orders', guard, (req, res) => {
    counter.runs += 1;
    if (req.body?.explode) throw new Error('boom');
    res.status(status()).json({ id: `ord_${counter.runs}`, ...req.body });
  });
  a.get('/orders', guard, (_req, res) => {
    counter.runs += 1;
    res.json({ runs: counter.runs });
  });
  a.use(idempotencyErrors());
  const server = await listen(a);
  closers.push(server.close);
  return { url: `${server.url}/orders`, counter };
}

describe('migrating from express-idempotency', () => {
  it('idempotency() → idempotency({ idem }): a retry is answered without calling the handler (no isHit)', async () => {
    const { url, counter } = await app({});
    const a = await postJson(url, { sku: 'a' }, { 'idempotency-key': 'k1' });
    const b = await postJson(url, { sku: 'a' }, { 'idempotency-key': 'k1' });
    expect(b.body).toEqual(a.body);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expect(counter.runs).toBe(1);
  });

  it('idempotencyKeyHeader → header', async () => {
    const { url, counter } = await app({ header: 'X-Request-Id' });
    await postJson(url, { sku: 'a' }, { 'x-request-id': 'r1' });
    await postJson(url, { sku: 'a' }, { 'x-request-id': 'r1' });
    expect(counter.runs).toBe(1);
  });

  it('intentValidator misuse: 422 fingerprint-mismatch (not 417), with a code', async () => {
    const { url, counter } = await app({});
    await postJson(url, { sku: 'a' }, { 'idempotency-key': 'k1' });
    const reuse = await postJson(url, { sku: 'b' }, { 'idempotency-key': 'k1' });
    expect(reuse.status).toBe(422);
    expect(reuse.body.code).toBe('idempotency_key_reused');
    expect(counter.runs).toBe(1);
  });

  it('a custom intentValidator → fingerprint: (req, body) => string', async () => {
    const fingerprint = (_req: Request, body: Uint8Array) => JSON.parse(new TextDecoder().decode(body)).sku;
    const { url, counter } = await app({ fingerprint });
    await postJson(url, { sku: 'a', note: 'first' }, { 'idempotency-key': 'i1' });
    const same = await postJson(url, { sku: 'a', note: 'second' }, { 'idempotency-key': 'i1' });
    expect(same.headers.get('idempotent-replayed')).toBe('true');
    expect((await postJson(url, { sku: 'b' }, { 'idempotency-key': 'i1' })).status).toBe(422);
    expect(counter.runs).toBe(1);
  });

  it('responseValidator (2xx only) → outcomePolicy: release everything else', async () => {
    let next = 500;
    const { url, counter } = await app({ outcomePolicy: (s) => (s < 300 ? 'store' : 'release') }, () => next);
    expect((await postJson(url, { sku: 'a' }, { 'idempotency-key': 'k1' })).status).toBe(500);
    next = 201;
    expect((await postJson(url, { sku: 'a' }, { 'idempotency-key': 'k1' })).status).toBe(201);
    expect(counter.runs).toBe(2);
  });

  it('by default a 500 is stored (Stripe): the retry gets it back, the handler runs once', async () => {
    const { url, counter } = await app({}, () => 500);
    await postJson(url, { sku: 'a' }, { 'idempotency-key': 'k1' });
    const again = await postJson(url, { sku: 'a' }, { 'idempotency-key': 'k1' });
    expect(again.status).toBe(500);
    expect(again.headers.get('x-should-retry')).toBe('false');
    expect(counter.runs).toBe(1);
  });

  it('reportError(req) → throw (or next(err)) with idempotencyErrors() mounted: the key is released', async () => {
    const { url, counter } = await app({});
    expect((await postJson(url, { explode: true }, { 'idempotency-key': 'k1' })).status).toBe(500);
    expect((await postJson(url, { explode: true }, { 'idempotency-key': 'k1' })).status).toBe(500);
    expect(counter.runs).toBe(2);
  });

  it('keys are scoped per caller; dangerouslyAllowGlobalKeys keeps one namespace', async () => {
    const scoped = await app({});
    await postJson(scoped.url, { sku: 'a' }, { 'idempotency-key': 'k1', authorization: 'Bearer alice' });
    await postJson(scoped.url, { sku: 'a' }, { 'idempotency-key': 'k1', authorization: 'Bearer bob' });
    expect(scoped.counter.runs).toBe(2);
    const global = await app({ dangerouslyAllowGlobalKeys: true });
    await postJson(global.url, { sku: 'a' }, { 'idempotency-key': 'k1', authorization: 'Bearer alice' });
    await postJson(global.url, { sku: 'a' }, { 'idempotency-key': 'k1', authorization: 'Bearer bob' });
    expect(global.counter.runs).toBe(1);
  });

  it('GET is never keyed, even with the middleware mounted on it', async () => {
    const { url, counter } = await app({});
    for (let i = 0; i < 2; i++) await fetch(url, { headers: { 'idempotency-key': 'k1' } });
    expect(counter.runs).toBe(2);
  });

  it('a duplicate in flight: 409 + Retry-After with onInProgress "reject", the same response with "wait"', async () => {
    for (const onInProgress of ['reject', 'wait'] as const) {
      const slow = express();
      slow.use(express.json());
      let runs = 0;
      slow.post(
        '/orders',
        idempotency({ idem: createIdem({ store: memoryStore() }), onInProgress }),
        async (_q, res) => {
          runs += 1;
          await new Promise((r) => setTimeout(r, 300));
          res.status(201).json({ id: 'ord_1' });
        },
      );
      const server = await listen(slow);
      closers.push(server.close);
      const [a, b] = await Promise.all([
        postJson(`${server.url}/orders`, {}, { 'idempotency-key': 'k' }),
        new Promise((r) => setTimeout(r, 50)).then(() =>
          postJson(`${server.url}/orders`, {}, { 'idempotency-key': 'k' }),
        ),
      ]);
      expect(a.status).toBe(201);
      if (onInProgress === 'reject') {
        expect(b.status).toBe(409);
        expect(Number(b.headers.get('retry-after'))).toBeGreaterThan(0);
      } else expect(b.body).toEqual(a.body);
      expect(runs).toBe(1);
    }
  });
});

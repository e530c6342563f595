/**
 * The recipes of docs/migrating/node-idempotency.md (`@node-idempotency/*`), run against
 * idem's Express middleware (a NestJS app on the Express platform mounts the same).
 */
import express, { type RequestHandler } from 'express';
import { createIdem, memoryStore } from 'idem';
import { idempotency, idempotencyErrors } from 'idem/express';
import { credentialScope } from 'idem/http';
import { afterEach, describe, expect, it } from 'vitest';
import { listen, postJson } from './serve.ts';

type Options = Omit<Parameters<typeof idempotency>[0], 'idem'>;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** POST /charge and POST /refund (and GET /charge) counting executions, behind `mount(idempotency(options))`. */
async function app(
  options: Options = {},
  extra: { mount?: (mw: RequestHandler) => RequestHandler; releaseOnThrow?: boolean } = {},
) {
  const counter = { runs: 0 };
  const a = express();
  a.use(express.json());
  const mw = idempotency({ idem: createIdem({ store: memoryStore() }), ...options });
  const guard = extra.mount ? extra.mount(mw) : mw;
  const handler: RequestHandler = (req, res) => {
    counter.runs += 1;
    if (req.body?.explode) throw new Error('boom');
    res.status(201).json({ run: counter.runs, path: req.path });
  };
  a.post('/charge', guard, handler);
  a.post('/refund', guard, handler);
  a.post('/internal/sync', guard, handler);
  a.get('/charge', guard, handler);
  if (extra.releaseOnThrow) a.use(idempotencyErrors());
  const server = await listen(a);
  closers.push(server.close);
  return { url: server.url, counter };
}

describe('migrating from @node-idempotency/*', () => {
  it('idempotencyKey (header name) → header', async () => {
    const { url, counter } = await app({ header: 'X-Key' });
    await postJson(`${url}/charge`, { pay: 100 }, { 'x-key': 'k1' });
    const again = await postJson(`${url}/charge`, { pay: 100 }, { 'x-key': 'k1' });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(counter.runs).toBe(1);
  });

  it('enforceIdempotency → required: true (400 missing-key)', async () => {
    const { url, counter } = await app({ required: true });
    const res = await postJson(`${url}/charge`, { pay: 100 });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('idempotency_key_missing');
    expect(counter.runs).toBe(0);
  });

  it('cacheTTLMS → ttl: after it, the key runs again', async () => {
    const { url, counter } = await app({ ttl: 300 });
    await postJson(`${url}/charge`, { pay: 100 }, { 'idempotency-key': 'k1' });
    await postJson(`${url}/charge`, { pay: 100 }, { 'idempotency-key': 'k1' });
    expect(counter.runs).toBe(1);
    await new Promise((r) => setTimeout(r, 450));
    await postJson(`${url}/charge`, { pay: 100 }, { 'idempotency-key': 'k1' });
    expect(counter.runs).toBe(2);
  });

  it('by default the route is in the fingerprint, not the key: one key on another route is 422', async () => {
    const { url, counter } = await app();
    await postJson(`${url}/charge`, { pay: 100 }, { 'idempotency-key': 'k1' });
    const other = await postJson(`${url}/refund`, { pay: 100 }, { 'idempotency-key': 'k1' });
    expect(other.status).toBe(422);
    expect(counter.runs).toBe(1);
  });

  it('the route in the key (method:path:key) → scope: credentials + path', async () => {
    const { url, counter } = await app({
      scope: (req) => [...credentialScope(req), new URL(req.url).pathname],
    });
    const charge = await postJson(`${url}/charge`, { pay: 100 }, { 'idempotency-key': 'k1' });
    const refund = await postJson(`${url}/refund`, { pay: 100 }, { 'idempotency-key': 'k1' });
    expect([charge.status, refund.status]).toEqual([201, 201]);
    expect((await postJson(`${url}/refund`, { pay: 100 }, { 'idempotency-key': 'k1' })).body).toEqual(
      refund.body,
    );
    expect(counter.runs).toBe(2);
  });

  it('skipRequest → mount the middleware conditionally', async () => {
    const skip = (path: string) => path.startsWith('/internal/');
    const { url, counter } = await app(
      {},
      { mount: (mw) => (req, res, next) => (skip(req.path) ? next() : mw(req, res, next)) },
    );
    await postJson(`${url}/internal/sync`, {}, { 'idempotency-key': 's1' });
    await postJson(`${url}/internal/sync`, {}, { 'idempotency-key': 's1' });
    expect(counter.runs).toBe(2);
  });

  it('keyMaxLength → maxKeyLength (default 255: a 256-char key is 400 invalid-key)', async () => {
    const byDefault = await app();
    expect(
      (await postJson(`${byDefault.url}/charge`, {}, { 'idempotency-key': 'k'.repeat(256) })).body.code,
    ).toBe('idempotency_key_invalid');
    const { url, counter } = await app({ maxKeyLength: 256 });
    expect((await postJson(`${url}/charge`, {}, { 'idempotency-key': 'k'.repeat(256) })).status).toBe(201);
    expect((await postJson(`${url}/charge`, {}, { 'idempotency-key': 'k'.repeat(256) })).status).toBe(201);
    expect(counter.runs).toBe(1);
    expect((await postJson(`${url}/charge`, {}, { 'idempotency-key': 'k'.repeat(257) })).status).toBe(400);
  });

  it('skipRequest(req) → skipRequest: (req) => boolean', async () => {
    const { url, counter } = await app({
      skipRequest: (req) => new URL(req.url).pathname.startsWith('/internal/'),
    });
    await postJson(`${url}/internal/sync`, {}, { 'idempotency-key': 's1' });
    await postJson(`${url}/internal/sync`, {}, { 'idempotency-key': 's1' });
    expect(counter.runs).toBe(2);
    await postJson(`${url}/charge`, {}, { 'idempotency-key': 's1' });
    await postJson(`${url}/charge`, {}, { 'idempotency-key': 's1' });
    expect(counter.runs).toBe(3);
  });

  it('a decorated GET was keyed; with idem it is never keyed', async () => {
    const { url, counter } = await app();
    for (let i = 0; i < 2; i++) await fetch(`${url}/charge`, { headers: { 'idempotency-key': 'g1' } });
    expect(counter.runs).toBe(2);
  });

  it('thrown errors stored and replayed (the interceptor’s way) → leave idempotencyErrors() out', async () => {
    const { url, counter } = await app();
    expect((await postJson(`${url}/charge`, { explode: true }, { 'idempotency-key': 'e1' })).status).toBe(
      500,
    );
    const again = await postJson(`${url}/charge`, { explode: true }, { 'idempotency-key': 'e1' });
    expect(again.status).toBe(500);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(counter.runs).toBe(1);
  });

  it('…or release them so a retry runs again → mount idempotencyErrors()', async () => {
    const { url, counter } = await app({}, { releaseOnThrow: true });
    await postJson(`${url}/charge`, { explode: true }, { 'idempotency-key': 'e1' });
    await postJson(`${url}/charge`, { explode: true }, { 'idempotency-key': 'e1' });
    expect(counter.runs).toBe(2);
  });
});

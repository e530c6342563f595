/**
 * The recipes of docs/migrating/hono-idempotency.md, run against idem's Hono middleware.
 */
import { Hono, type MiddlewareHandler } from 'hono';
import { createIdem, type IdemEvent, InvalidOptionError, memoryStore } from 'idem';
import { idempotency } from 'idem/hono';
import { describe, expect, it } from 'vitest';

const codeOf = async (res: Response) => ((await res.json()) as { code: string }).code;

type Options = Omit<Parameters<typeof idempotency>[0], 'idem'>;

/** POST /api/payments counting executions, behind `mount(idempotency(options))`. */
function app(options: Options = {}, mount = (mw: MiddlewareHandler): MiddlewareHandler => mw) {
  const counter = { runs: 0, keys: [] as (string | undefined)[] };
  const a = new Hono();
  a.use('/api/*', mount(idempotency({ idem: createIdem({ store: memoryStore() }), ...options })));
  a.post('/api/:name', async (c) => {
    counter.runs += 1;
    counter.keys.push(c.get('idempotency')?.key);
    return c.json({ id: `pay_${counter.runs}`, ...(await c.req.json()) }, 201);
  });
  const post = (body: unknown, headers: Record<string, string> = {}, path = '/api/payments') =>
    a.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer caller-1', ...headers },
      body: JSON.stringify(body),
    });
  return { post, counter };
}

describe('migrating from hono-idempotency', () => {
  it('idempotency({ store }) → idempotency({ idem }) (or { store }): one execution, replay marked', async () => {
    const { post, counter } = app();
    const a = await post({ amount: 1000 }, { 'idempotency-key': 'k1' });
    const b = await post({ amount: 1000 }, { 'idempotency-key': 'k1' });
    expect(await b.json()).toEqual(await a.json());
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expect(counter.runs).toBe(1);
  });

  it('headerName → header; c.get("idempotencyKey") → c.get("idempotency")?.key', async () => {
    const { post, counter } = app({ header: 'X-Idempotency-Key' });
    await post({ amount: 1 }, { 'x-idempotency-key': 'h1' });
    expect(counter.keys).toEqual(['h1']);
  });

  it('required → required: 400 missing-key', async () => {
    const { post } = app({ required: true });
    const res = await post({ amount: 1 });
    expect(res.status).toBe(400);
    expect(await codeOf(res)).toBe('idempotency_key_missing');
  });

  it('methods → methods; GET is refused at setup', () => {
    expect(() => idempotency({ idem: createIdem({ store: memoryStore() }), methods: ['GET'] })).toThrow(
      InvalidOptionError,
    );
  });

  it('maxKeyLength (256) → maxKeyLength: 256; the default 255 refuses longer keys with 400 invalid-key', async () => {
    const byDefault = app();
    expect((await byDefault.post({}, { 'idempotency-key': 'k'.repeat(255) })).status).toBe(201);
    const long = await byDefault.post({}, { 'idempotency-key': 'k'.repeat(256) });
    expect(long.status).toBe(400);
    expect(await codeOf(long)).toBe('idempotency_key_invalid');
    const { post, counter } = app({ maxKeyLength: 256 });
    expect((await post({}, { 'idempotency-key': 'k'.repeat(256) })).status).toBe(201);
    expect((await post({}, { 'idempotency-key': 'k'.repeat(256) })).headers.get('idempotent-replayed')).toBe(
      'true',
    );
    expect((await post({}, { 'idempotency-key': 'k'.repeat(257) })).status).toBe(400);
    expect(counter.runs).toBe(1);
  });

  it('headerName (the old name) is refused, naming header', () => {
    expect(() =>
      idempotency({ idem: createIdem({ store: memoryStore() }), headerName: 'X-Key' } as Options),
    ).toThrow('unknown option headerName — did you mean header?');
  });

  it('maxBodySize → bodyLimit: 413 before the handler', async () => {
    const { post, counter } = app({ bodyLimit: 64 });
    const res = await post({ blob: 'x'.repeat(100) }, { 'idempotency-key': 'big' });
    expect(res.status).toBe(413);
    expect(counter.runs).toBe(0);
  });

  it('cacheKeyPrefix: (c) => tenant → scope: (req) => tenant', async () => {
    const { post, counter } = app({ scope: (req) => req.headers.get('x-tenant-id') ?? 'default' });
    await post({ amount: 1 }, { 'idempotency-key': 'k1', 'x-tenant-id': 'acme' });
    await post({ amount: 1 }, { 'idempotency-key': 'k1', 'x-tenant-id': 'globex' });
    await post({ amount: 1 }, { 'idempotency-key': 'k1', 'x-tenant-id': 'acme' });
    expect(counter.runs).toBe(2);
  });

  it('skipRequest: (c) => … → skipRequest: (req) => …', async () => {
    const { post, counter } = app({ skipRequest: (req) => new URL(req.url).pathname === '/api/health' });
    await post({}, { 'idempotency-key': 'k1' });
    await post({}, { 'idempotency-key': 'k1' });
    expect(counter.runs).toBe(1);
    await post({}, { 'idempotency-key': 'k1' }, '/api/health');
    await post({}, { 'idempotency-key': 'k1' }, '/api/health');
    expect(counter.runs).toBe(3);
  });

  it('fingerprint: (c) => … → excludeFields; a mismatch is 422', async () => {
    const { post, counter } = app({ excludeFields: ['requestedAt'] });
    await post({ amount: 1, requestedAt: 1 }, { 'idempotency-key': 'k1' });
    expect((await post({ amount: 1, requestedAt: 2 }, { 'idempotency-key': 'k1' })).status).toBe(201);
    const other = await post({ amount: 2, requestedAt: 3 }, { 'idempotency-key': 'k1' });
    expect(other.status).toBe(422);
    expect(await codeOf(other)).toBe('idempotency_key_reused');
    expect(counter.runs).toBe(1);
  });

  it('fingerprint: (c) => … → fingerprint: (req, body) => …', async () => {
    const fingerprint = (_req: Request, body: Uint8Array) =>
      String(JSON.parse(new TextDecoder().decode(body)).orderId);
    const { post, counter } = app({ fingerprint });
    await post({ orderId: 'o1', note: 'a' }, { 'idempotency-key': 'f1' });
    const same = await post({ orderId: 'o1', note: 'b' }, { 'idempotency-key': 'f1' });
    expect(same.headers.get('idempotent-replayed')).toBe('true');
    expect((await post({ orderId: 'o2' }, { 'idempotency-key': 'f1' })).status).toBe(422);
    expect(counter.runs).toBe(1);
  });

  it('onError: (error, c) => … → onError: (problem, req) => Response', async () => {
    const { post } = app({
      required: true,
      onError: (p) => Response.json({ error: p.code, message: p.detail }, { status: p.status }),
    });
    const res = await post({ amount: 1 });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(await res.json()).toEqual({ error: 'idempotency_key_missing', message: expect.any(String) });
  });

  it('Idempotency-Replayed → replayHeader: both spellings', async () => {
    const { post } = app({ replayHeader: ['Idempotent-Replayed', 'Idempotency-Replayed'] });
    await post({}, { 'idempotency-key': 'r1' });
    const again = await post({}, { 'idempotency-key': 'r1' });
    expect(again.headers.get('idempotency-replayed')).toBe('true');
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });

  it('onCacheHit / onCacheMiss → onEvent per middleware', async () => {
    const seen: string[] = [];
    const { post } = app({ onEvent: (e) => void seen.push(`${e.type}:${e.key}`) });
    await post({}, { 'idempotency-key': 'h1' });
    await post({}, { 'idempotency-key': 'h1' });
    await new Promise((r) => setTimeout(r, 5));
    expect(seen).toEqual(['miss:h1', 'hit:h1']);
  });

  it('engine-wide events → createIdem({ onEvent })', async () => {
    const events: IdemEvent['type'][] = [];
    const idem = createIdem({ store: memoryStore(), onEvent: (e) => events.push(e.type) });
    const a = new Hono();
    a.post('/api/payments', idempotency({ idem }), (c) => c.json({ ok: true }));
    const send = () =>
      a.request('/api/payments', {
        method: 'POST',
        headers: { 'idempotency-key': 'e1', authorization: 'Bearer x' },
      });
    await send();
    await send();
    expect(events).toContain('acquired');
    expect(events).toContain('replayed');
  });

  it('non-2xx not cached → outcomePolicy releasing them (idem stores definitive 4xx and 5xx)', async () => {
    let status = 400;
    const a = new Hono();
    let runs = 0;
    a.post(
      '/api/payments',
      idempotency({
        idem: createIdem({ store: memoryStore() }),
        outcomePolicy: (s) => (s < 300 ? 'store' : 'release'),
      }),
      (c) => {
        runs += 1;
        return c.json({ runs }, status as 400);
      },
    );
    const send = () =>
      a.request('/api/payments', {
        method: 'POST',
        headers: { 'idempotency-key': 'n1', authorization: 'Bearer x' },
      });
    expect((await send()).status).toBe(400);
    status = 201;
    expect((await send()).status).toBe(201);
    expect(runs).toBe(2);
  });
});

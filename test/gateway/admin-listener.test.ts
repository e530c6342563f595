/**
 * The gateway's admin listener over real sockets: its config checks, the bearer token on every
 * path (the browser's token page included), the JSON API the dashboard reads, the recent-keys
 * ring fed by real traffic, key search by raw key (in the ring and in the store), and the raw
 * key never leaving the request.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDemoService, type DemoService } from '../../src/cli/demo-service.ts';
import { InvalidOptionError } from '../../src/core/errors.ts';
import type { KeyLifecycle } from '../../src/gateway/admin-source.ts';
import { adminListenerOf } from '../../src/gateway/config.ts';
import { createGateway, type Gateway } from '../../src/gateway/index.ts';
import { gatewayMetrics } from '../../src/gateway/metrics.ts';
import { keyTracker } from '../../src/gateway/recent-keys.ts';
import { post, request, until } from './helpers.ts';

const TOKEN = 'test-admin-token-0123456789abcdef';
const CLI = join(import.meta.dirname, '../../src/cli/index.ts');
const auth = { authorization: `Bearer ${TOKEN}` };

describe('admin listener: configuration', () => {
  it('an admin port needs a token, and says how to make one', async () => {
    expect(() => adminListenerOf({ adminPort: 9090 }, {})).toThrow(/openssl rand -hex 24/);
    await expect(
      createGateway({ upstream: 'http://127.0.0.1:1', store: 'memory', adminPort: 0 }),
    ).rejects.toThrow(InvalidOptionError);
    expect(adminListenerOf({ adminPort: 9090 }, { IDEM_ADMIN_TOKEN: TOKEN })).toEqual({
      port: 9090,
      host: '127.0.0.1',
      token: TOKEN,
    });
    expect(adminListenerOf({}, {})).toBeUndefined();
  });

  it('refuses a bad port, host or token', async () => {
    for (const adminPort of [-1, 65536, 1.5, '9090'])
      expect(() => adminListenerOf({ adminPort: adminPort as number, adminToken: TOKEN }, {})).toThrow(
        /adminPort must be a whole number from 0 to 65535/,
      );
    expect(() => adminListenerOf({ adminPort: 1, adminHost: '', adminToken: TOKEN }, {})).toThrow(
      /adminHost/,
    );
    await expect(
      createGateway({ upstream: 'http://127.0.0.1:1', store: 'memory', adminPort: 0, adminToken: 'short' }),
    ).rejects.toThrow(/at least 16 characters/);
    await expect(
      createGateway({ upstream: 'http://127.0.0.1:1', store: 'memory', adminPrt: 1 } as never),
    ).rejects.toThrow(/did you mean adminPort/);
  });

  it('idem serve --admin-port without a token exits with the remedy', async () => {
    const child = spawn(
      process.execPath,
      [
        '--conditions=idem-source',
        CLI,
        'serve',
        '--upstream',
        'http://127.0.0.1:1',
        '--store',
        'memory',
        '--port',
        '0',
        '--admin-port',
        '0',
      ],
      { env: { ...process.env, IDEM_ADMIN_TOKEN: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const code = await new Promise((r) => child.on('exit', r));
    expect(code).toBe(2);
    expect(stderr).toMatch(/adminPort needs an admin token.*openssl rand -hex 24/);
  });
});

describe('admin listener: idem serve', () => {
  it('idem serve --admin-port --admin-host prints the dashboard URL, which needs the token', async () => {
    const child = spawn(
      process.execPath,
      [
        '--conditions=idem-source',
        CLI,
        'serve',
        '--upstream',
        'http://127.0.0.1:1',
        '--store',
        'memory',
        '--port',
        '0',
        '--admin-port',
        '0',
        '--admin-host',
        '127.0.0.1',
      ],
      { env: { ...process.env, IDEM_ADMIN_TOKEN: TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      let stdout = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c));
      const printed = () =>
        /idem dashboard (http:\/\/127\.0\.0\.1:\d+)\/ \(admin token required\)/.exec(stdout);
      expect(await until(() => printed() !== null, 15_000)).toBe(true);
      const dashboard = printed()![1]!;
      expect((await request(dashboard, { method: 'GET', path: '/api/metrics' })).status).toBe(401);
      const page = await request(dashboard, { method: 'GET', path: '/', headers: auth });
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.on('exit', r));
    }
  });
});

describe('admin listener: token, API, recent keys, search', () => {
  let demo: DemoService;
  let gateway: Gateway;
  let url: string;
  let admin: string;
  let demoUrl: string;
  const dir = mkdtempSync(join(tmpdir(), 'idem-admin-'));
  const store = `sqlite:${join(dir, 'gw.db')}`;

  beforeAll(async () => {
    demo = createDemoService({ delayMs: 30, tokenDelayMs: 1 });
    demoUrl = await demo.listen(0);
    gateway = await createGateway({
      upstream: demoUrl,
      store,
      purgeEvery: false,
      adminPort: 0,
      adminToken: TOKEN,
      routes: [{ path: '/payments', key: 'required', concurrency: 'wait', outcomes: { '503': 'release' } }],
    });
    url = await gateway.listen(0);
    admin = gateway.adminUrl as string;
  });
  afterAll(async () => {
    await gateway.close();
    await demo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const api = (
    path: string,
    init: { method?: string; body?: string; headers?: Record<string, string> } = {},
  ) =>
    request(admin, {
      method: init.method ?? 'GET',
      path,
      headers: { ...auth, ...init.headers },
      body: init.body,
    });
  const find = async (key: string) => {
    const r = await api('/api/keys/find', { method: 'POST', body: JSON.stringify({ key }) });
    expect(r.status).toBe(200);
    return (JSON.parse(r.text) as { keys: KeyLifecycle[] }).keys;
  };

  it('listens on its own port; the public listener keeps its own endpoints', async () => {
    expect(admin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(admin).not.toBe(url);
    // as before: with an admin token, the public /metrics needs it too
    expect((await request(url, { method: 'GET', path: '/metrics' })).status).toBe(401);
    const metrics = await request(url, { method: 'GET', path: '/metrics', headers: auth });
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('idem_claims_total');
  });

  it('answers 401 to every request without the right token', async () => {
    const wrong = { authorization: `Bearer ${TOKEN}x` };
    for (const path of ['/', '/metrics', '/savings', '/api/metrics', '/api/keys', '/nowhere']) {
      for (const headers of [{}, wrong, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }]) {
        const r = await request(admin, { method: 'GET', path, headers });
        expect(r.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
        expect(r.headers['www-authenticate']).toBe('Bearer realm="idem-admin"');
      }
    }
    const search = await request(admin, {
      method: 'POST',
      path: '/api/keys/find',
      headers: wrong,
      body: JSON.stringify({ key: 'k' }),
    });
    expect(search.status).toBe(401);
    expect(search.headers['content-type']).toBe('application/problem+json');
  });

  it('a browser asking for / without the token gets the token form, which holds no data', async () => {
    await post(url, '/payments', { amount: 1 }, 'form-key-1');
    const r = await request(admin, { method: 'GET', path: '/', headers: { accept: 'text/html' } });
    expect(r.status).toBe(401);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.text).toContain('id="token-form"');
    expect(r.text).toContain('sessionStorage');
    expect(r.text).not.toMatch(/idem_|recordId|api\/metrics/);
    const page = await api('/', { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.text).toContain('/api/metrics');
  });

  it('serves the metrics as text and JSON, and the savings', async () => {
    const text = await api('/metrics');
    expect(text.status).toBe(200);
    expect(text.text).toContain('idem_gateway_wait_duration_seconds');
    const json = JSON.parse((await api('/api/metrics')).text) as { name: string }[];
    expect(json.map((m) => m.name)).toContain('idem_gateway_requests_total');
    const savings = JSON.parse((await api('/savings')).text);
    expect(savings).toMatchObject({ duplicatesSuppressed: 0 });
  });

  it('remembers each key’s lifecycle from real traffic, and finds it by raw key', async () => {
    const key = 'order-7f3a-raw-key';
    expect((await post(url, '/payments', { amount: 5 }, key)).status).toBe(201);
    expect((await post(url, '/payments', { amount: 5 }, key)).headers['idempotent-replayed']).toBe('true');
    expect((await post(url, '/payments', { amount: 6 }, key)).status).toBe(422);
    const recent = JSON.parse((await api('/api/keys?limit=5')).text) as { keys: KeyLifecycle[] };
    const [entry] = recent.keys;
    expect(entry).toMatchObject({
      route: '/payments',
      method: 'POST',
      state: 'completed',
      replays: 1,
      pid: process.pid,
    });
    const types = entry!.events.map((e) => e.type + (e.status ? ` ${e.status}` : ''));
    expect(types).toEqual([
      'acquired',
      'completed',
      'executed 201',
      'replayed',
      'replayed 201',
      'mismatch',
      'rejected 422',
    ]);

    const found = await find(key);
    expect(found.map((k) => k.recordId)).toEqual([entry!.recordId]);
    expect(await find(`"${key}"`)).toHaveLength(1); // the sf-string form is the same key
    expect(await find('never-sent')).toEqual([]);
    // the raw key is nowhere in what the admin listener answers
    const everything = [
      (await api('/api/keys?limit=500')).text,
      JSON.stringify(found),
      (await api('/metrics')).text,
      (await api('/', { headers: { accept: 'text/html' } })).text,
    ].join('\n');
    expect(everything).not.toContain(key);
  });

  it('records waits and their duration, and released keys', async () => {
    const key = 'wait-key-1';
    const first = post(url, '/payments?delay=300', { amount: 1 }, key);
    await new Promise((r) => setTimeout(r, 80));
    const second = await post(url, '/payments?delay=300', { amount: 1 }, key);
    expect((await first).status).toBe(201);
    expect(second.headers['idempotent-replayed']).toBe('true');
    const [entry] = await find(key);
    const waited = entry!.events.find((e) => e.detail?.startsWith('waited'));
    expect(waited?.type).toBe('replayed');
    expect(Number(/waited (\d+) ms/.exec(waited!.detail!)![1])).toBeGreaterThan(100);
    expect((await api('/metrics')).text).toMatch(/idem_gateway_wait_duration_seconds_count 1\b/);

    expect((await post(url, '/payments?status=503', { amount: 1 }, 'released-key')).status).toBe(503);
    const [released] = await find('released-key');
    expect(released).toMatchObject({ state: 'released' });
  });

  it('finds a key this process never saw in the store (unscoped records)', async () => {
    const other = await createGateway({
      upstream: demoUrl,
      store,
      purgeEvery: false,
      routes: [{ path: '/payments', key: 'required' }],
    });
    try {
      const otherUrl = await other.listen(0);
      expect((await post(otherUrl, '/payments', { amount: 9 }, 'seen-elsewhere')).status).toBe(201);
      // credentials scope the record: only the caller's gateway can tell whose it is
      const scoped = await post(otherUrl, '/payments', { amount: 9 }, 'scoped-elsewhere', {
        authorization: 'Bearer caller-1',
      });
      expect(scoped.status).toBe(201);
    } finally {
      await other.close();
    }
    const [stored] = await find('seen-elsewhere');
    expect(stored).toMatchObject({ state: 'completed', route: '', replays: 0 });
    expect(stored!.events.map((e) => e.type)).toEqual(['found_in_store']);
    expect(await find('scoped-elsewhere')).toEqual([]);
  });

  it('answers bad API requests with problems, never a crash', async () => {
    expect((await api('/api/keys?limit=0')).status).toBe(400);
    expect((await api('/api/keys?limit=abc')).status).toBe(400);
    expect((await api('/api/keys?limit=501')).status).toBe(400);
    const bad = await api('/api/keys/find', { method: 'POST', body: '{"key":' });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text).type).toMatch(/invalid-body$/);
    const noKey = await api('/api/keys/find', { method: 'POST', body: '{"key":""}' });
    expect(noKey.status).toBe(400);
    expect(JSON.parse(noKey.text).type).toMatch(/invalid-key$/);
    const big = await api('/api/keys/find', {
      method: 'POST',
      body: JSON.stringify({ key: 'k'.repeat(9000) }),
    });
    expect(big.status).toBe(413);
    expect((await api('/api/keys/find')).status).toBe(405);
    expect((await api('/nowhere')).status).toBe(404);
  });
});

describe('recent keys ring', () => {
  it('keeps the newest keys and events, up to its bounds', () => {
    const metrics = gatewayMetrics();
    const tracker = keyTracker({ metrics, keyHeader: 'idempotency-key', capacity: 3, eventsPerKey: 2 });
    // events outside a request touch only keys already seen
    tracker.onEvent({ type: 'acquired', recordId: 'r0', attempt: 1 });
    expect(tracker.recent(10)).toEqual([]);
    const fakeReq = (key: string) => ({ method: 'POST', headers: { 'idempotency-key': key } }) as never;
    const fakeRes = { once() {} } as never;
    for (let i = 1; i <= 5; i++) {
      tracker.within(fakeReq(`k${i}`), fakeRes, () => {
        tracker.onEvent({ type: 'acquired', recordId: `r${i}`, attempt: 1 });
        tracker.onEvent({ type: 'completed', recordId: `r${i}`, attempt: 1, durationMs: 3 });
        tracker.metrics.request('/x', 'executed');
      });
    }
    expect(tracker.recent(10).map((k) => k.recordId)).toEqual(['r5', 'r4', 'r3']);
    expect(tracker.recent(10)[0]!.events.map((e) => e.type)).toEqual(['completed', 'executed']);
    expect(tracker.find('k4').map((k) => k.recordId)).toEqual(['r4']);
    expect(tracker.find('k1')).toEqual([]); // evicted
    expect(JSON.stringify(tracker.recent(10))).not.toMatch(/"k\d"|keyHash/);
  });
});

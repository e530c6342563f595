/**
 * The gateway's own endpoints (/healthz, /metrics, the policy document), the config file,
 * the store specs, and the `idem` command run as a real child process.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Store } from '../../src/core/store.ts';
import { createGateway, loadGatewayConfig, storeFromSpec } from '../../src/gateway/index.ts';
import { memoryStore } from '../../src/index.ts';
import { post, request, type Stack, startStack } from './helpers.ts';

const CLI = join(import.meta.dirname, '../../src/cli/index.ts');
const dir = mkdtempSync(join(tmpdir(), 'idem-gw-'));

describe('gateway: /healthz, /metrics, the policy document', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({
      routes: [
        { path: '/payments', key: 'required', concurrency: 'wait', ttl: '1h' },
        { path: '/orders/:id/refunds', fingerprintHeaders: ['content-type', 'api-version'] },
        { path: '/v1/*', concurrency: 'attach' },
      ],
    });
  });
  afterAll(() => s.close());

  it('/healthz checks the store', async () => {
    const r = await request(s.url, { method: 'GET', path: '/healthz' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toMatchObject({ status: 'ok', store: 'memory' });
  });

  it('/healthz answers 503 when the store fails', async () => {
    const broken: Store = { ...memoryStore(), name: 'broken', get: () => Promise.reject(new Error('down')) };
    const gateway = await createGateway({ upstream: s.upstreamUrl, store: broken, purgeEvery: false });
    const url = await gateway.listen(0);
    try {
      const r = await request(url, { method: 'GET', path: '/healthz' });
      expect(r.status).toBe(503);
      expect(JSON.parse(r.text)).toMatchObject({ status: 'unavailable', store: 'broken', error: 'down' });
    } finally {
      await gateway.close();
    }
  });

  for (const onStoreError of ['closed', 'open'] as const) {
    it(`store down on claim, onStoreError '${onStoreError}'`, async () => {
      const down: Store = {
        ...memoryStore(),
        name: 'down',
        claim: () => Promise.reject(new Error('connection refused')),
      };
      const gateway = await createGateway({
        upstream: s.upstreamUrl,
        store: down,
        purgeEvery: false,
        onStoreError,
      });
      const url = await gateway.listen(0);
      const before = s.demo.executions.payments;
      try {
        const r = await post(url, '/payments', { amount: 1 }, 'down-key');
        if (onStoreError === 'closed') {
          expect(r.status).toBe(503);
          expect(JSON.parse(r.text).type).toMatch(/store-unavailable$/);
          expect(r.headers['retry-after']).toBe('2'); // one rule with the middleware
          expect(s.demo.executions.payments).toBe(before);
        } else {
          expect(r.status).toBe(201);
          expect(r.headers['idempotency-status']).toBe('bypassed');
          expect(s.demo.executions.payments).toBe(before + 1);
        }
      } finally {
        await gateway.close();
      }
    });
  }

  it('/metrics counts claims, replays, mismatches, requests without key, store latency', async () => {
    await post(s.url, '/payments', { a: 1 }, 'm-1');
    await post(s.url, '/payments', { a: 1 }, 'm-1');
    await post(s.url, '/payments', { a: 2 }, 'm-1');
    await post(s.url, '/payments', { a: 2 });
    const r = await request(s.url, { method: 'GET', path: '/metrics' });
    expect(r.headers['content-type']).toMatch(/^text\/plain/);
    const value = (line: string) =>
      Number(r.text.match(new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm'))?.[1]);
    expect(value('idem_claims_total{idem_takeover="false"}')).toBeGreaterThanOrEqual(1);
    expect(
      value('idem_replays_total{idem_replay_shared="false",idem_replay_cached="false"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(value('idem_fingerprint_mismatches_total')).toBeGreaterThanOrEqual(1);
    expect(value('idem_gateway_requests_without_key_total{route="/payments"}')).toBe(1);
    expect(value('idem_gateway_requests_total{route="/payments",result="executed"}')).toBe(1);
    expect(
      value(
        'idem_store_operation_duration_seconds_count{idem_store_operation="claim",idem_store_name="memory"}',
      ),
    ).toBeGreaterThanOrEqual(3);
    expect(
      value('idem_in_progress_duration_seconds_count{idem_outcome_error="false"}'),
    ).toBeGreaterThanOrEqual(1);
    for (const name of ['idem_takeovers_total', 'idem_in_progress_conflicts_total', 'idem_waits_total']) {
      expect(r.text).toMatch(new RegExp(`^${name} \\d+$`, 'm'));
    }
    // labelled by error_type: no series until a store operation fails
    expect(r.text).toContain('# TYPE idem_store_errors_total counter');
  });

  it('publishes the policy as an OpenAPI fragment', async () => {
    const r = await request(s.url, { method: 'GET', path: '/.well-known/idempotency-policy' });
    expect(r.status).toBe(200);
    const doc = JSON.parse(r.text);
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.components.parameters.IdempotencyKeyRequired).toMatchObject({
      name: 'Idempotency-Key',
      in: 'header',
      required: true,
    });
    expect(doc.components.headers.IdempotentReplayed).toBeDefined();
    const op = doc.paths['/payments'].post;
    expect(op.parameters[0].$ref).toBe('#/components/parameters/IdempotencyKeyRequired');
    expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['400', '409', '413', '422']));
    expect(op['x-idempotency']).toMatchObject({ ttlSeconds: 3600, concurrency: 'wait' });
    expect(op['x-idempotency'].outcomes).toMatchObject({
      201: 'store',
      429: 'release',
      500: 'store',
      503: 'release',
    });
    expect(doc.paths['/orders/{id}/refunds'].post['x-idempotency'].fingerprint.headers).toEqual([
      'content-type',
      'api-version',
    ]);
    expect(doc['x-idempotency'].routes.map((x: { path: string }) => x.path)).toEqual([
      '/payments',
      '/orders/:id/refunds',
      '/v1/*',
    ]);
  });
});

describe('gateway: close', () => {
  it('close() twice, and at once: the second waits for the first instead of failing', async () => {
    const s = await startStack();
    await Promise.all([s.gateway.close(), s.gateway.close()]);
    await expect(s.gateway.close()).resolves.toBeUndefined();
    await s.demo.close();
  });
});

describe('gateway: config file and store specs', () => {
  it('routes from a JSON file: excluded body fields, fingerprint headers, path params', async () => {
    const file = join(dir, 'gateway.json');
    writeFileSync(
      file,
      JSON.stringify({
        defaults: { concurrency: 'wait' },
        routes: [
          {
            path: '/payments',
            excludeFields: ['meta.traceId'],
            fingerprintHeaders: ['content-type', 'api-version'],
          },
        ],
      }),
    );
    const config = await loadGatewayConfig(file);
    const s = await startStack(config);
    try {
      const a = await post(s.url, '/payments', { amount: 1, meta: { traceId: 'a' } }, 'cfg-1', {
        'api-version': '1',
      });
      const b = await post(s.url, '/payments', { meta: { traceId: 'b' }, amount: 1 }, 'cfg-1', {
        'api-version': '1',
      });
      expect(b.headers['idempotent-replayed']).toBe('true');
      expect(b.body.equals(a.body)).toBe(true);
      const c = await post(s.url, '/payments', { amount: 1, meta: { traceId: 'a' } }, 'cfg-1', {
        'api-version': '2',
      });
      expect(c.status).toBe(422);
      expect(s.demo.executions.payments).toBe(1);
    } finally {
      await s.close();
    }
  });

  it('rejects bad config with a message naming the field', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ upstream: 'http://x', rutes: [] }));
    await expect(loadGatewayConfig(bad)).rejects.toThrow(/unknown option rutes — did you mean routes\?/);
    const up = 'http://127.0.0.1:9';
    await expect(
      createGateway({
        upstream: up,
        store: 'memory',
        routes: [{ path: '/a', concurrency: 'queue' as never }],
      }),
    ).rejects.toThrow(/routes\[0\]\.concurrency must be one of/);
    await expect(
      createGateway({ upstream: up, store: 'memory', routes: [{ path: '/a', methods: ['GET'] }] }),
    ).rejects.toThrow(/never keyed/);
    await expect(
      createGateway({ upstream: up, store: 'memory', routes: [{ path: '/a', outcomes: { '5x': 'store' } }] }),
    ).rejects.toThrow(/neither a status/);
    await expect(
      createGateway({ upstream: up, store: 'memory', defaults: { ttl: 'a day' as never } }),
    ).rejects.toThrow(/defaults|ttl/);
    await expect(createGateway({ upstream: 'ftp://x', store: 'memory' })).rejects.toThrow(/http: or https:/);
  });

  it('store specs: memory, sqlite:PATH; unknown ones are refused', async () => {
    expect((await storeFromSpec('memory')).name).toBe('memory');
    const sqlite = await storeFromSpec(`sqlite:${join(dir, 'g.db')}`);
    expect(sqlite.name).toBe('sqlite');
    await sqlite.close?.();
    await expect(storeFromSpec('mongodb://x')).rejects.toThrow(/unknown store/);
  });
});

describe('the idem command', () => {
  it('idem check reports a gateway as idempotent (exit 0) and the bare service as not (exit 1)', async () => {
    const s = await startStack({ routes: [{ path: '/payments', concurrency: 'wait' }] });
    try {
      const good = await run(['check', `${s.url}/payments`]);
      expect(good.code).toBe(0);
      expect(good.out).toMatch(/✓ pass {2}2\. same key again.*201 replayed/);
      expect(good.out).toMatch(/✓ pass {2}5\. same key, changed body.*422 problem\+json/);
      expect(good.out).toContain('result: idempotent');
      const bad = await run(['check', `${s.upstreamUrl}/payments`]);
      expect(bad.code).toBe(1);
      expect(bad.out).toContain('result: NOT idempotent');
    } finally {
      await s.close();
    }
  });

  it('idem serve --config runs a gateway that replays', async () => {
    const s = await startStack();
    const file = join(dir, 'serve.json');
    writeFileSync(file, JSON.stringify({ routes: [{ path: '/payments', concurrency: 'wait' }] }));
    const child = spawn(
      process.execPath,
      [
        '--conditions=idem-source',
        CLI,
        'serve',
        '--upstream',
        s.upstreamUrl,
        '--store',
        `sqlite:${join(dir, 'serve.db')}`,
        '--port',
        '0',
        '--config',
        file,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d) => {
          out += d;
          const m = /idem gateway (http:\/\/\S+)/.exec(out);
          if (m) resolve(m[1] as string);
        });
        child.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
      });
      const a = await post(url, '/payments', { amount: 9 }, 'serve-1');
      const b = await post(url, '/payments', { amount: 9 }, 'serve-1');
      expect(b.headers['idempotent-replayed']).toBe('true');
      expect(b.body.equals(a.body)).toBe(true);
      expect(s.demo.executions.payments).toBe(1);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await s.close();
    }
  });

  it('idem serve without an upstream fails with a clear message', async () => {
    const r = await run(['serve', '--store', 'memory']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--upstream .* is required/);
  });

  it('idem demo starts the service and the gateway and prints a curl example', async () => {
    const child = spawn(
      process.execPath,
      [
        '--conditions=idem-source',
        CLI,
        'demo',
        '--port',
        '0',
        '--upstream-port',
        '0',
        '--store',
        'memory',
        '--delay',
        '10',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const out = await new Promise<string>((resolve, reject) => {
        let text = '';
        child.stdout.on('data', (d) => {
          text += d;
          if (text.includes('idem check')) resolve(text);
        });
        child.once('exit', (code) => reject(new Error(`demo exited ${code}`)));
      });
      const curl = /curl -i (\S+\/payments) .*idempotency-key: (\S+)'/.exec(out);
      expect(curl).not.toBeNull();
      const [, url, key] = curl as unknown as [string, string, string];
      const a = await post(
        url.replace(/\/payments$/, ''),
        '/payments',
        { amount: 1240.55, currency: 'EUR' },
        key,
      );
      const b = await post(
        url.replace(/\/payments$/, ''),
        '/payments',
        { amount: 1240.55, currency: 'EUR' },
        key,
      );
      expect(a.status).toBe(201);
      expect(b.headers['idempotent-replayed']).toBe('true');
    } finally {
      child.kill('SIGINT');
      await new Promise((r) => child.once('exit', r));
    }
  });
});

function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--conditions=idem-source', CLI, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

/**
 * The gateway's operational endpoints on its public listener: `/metrics` and `/savings` answer
 * only this machine without an admin token, and only the token's bearer with one; the proxy,
 * `/healthz` and the published policy stay open. A gateway on 0.0.0.0 is reached through this
 * machine's own non-loopback address to play the remote client. Also: `IDEM_ENCRYPTION_KEYS`
 * seals what the gateway stores.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGateway, type Gateway } from 'idem/gateway';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const TOKEN = 'admin-token-for-tests-0123456789';
const external = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
let upstream: http.Server;
let upstreamUrl: string;
const gateways: Gateway[] = [];
const dir = mkdtempSync(join(tmpdir(), 'idem-admin-'));

beforeAll(async () => {
  upstream = http.createServer((req, res) => {
    req.resume();
    res.writeHead(201, { 'content-type': 'application/json' }).end('{"note":"stored-body-secret"}');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const g of gateways) await g.close();
  await new Promise((r) => upstream.close(r));
  rmSync(dir, { recursive: true, force: true });
});

async function start(config: Record<string, unknown> = {}) {
  const g = await createGateway({ store: 'memory', purgeEvery: false, upstream: upstreamUrl, ...config });
  gateways.push(g);
  const url = await g.listen(0, '0.0.0.0');
  return Number(new URL(url).port);
}
const get = (host: string, port: number, path: string, auth?: string) =>
  fetch(`http://${host}:${port}${path}`, { headers: auth ? { authorization: auth } : {} });

describe('admin endpoints on the public listener', () => {
  it.skipIf(!external)('without a token: loopback only', async () => {
    const port = await start();
    expect((await get('127.0.0.1', port, '/metrics')).status).toBe(200);
    const remote = await get(external as string, port, '/metrics');
    expect(remote.status).toBe(401);
    expect(remote.headers.get('content-type')).toBe('application/problem+json');
    expect(remote.headers.get('www-authenticate')).toContain('Bearer');
    expect(await remote.text()).not.toContain('idem_claims_total');
    // the rest of the gateway is for everyone
    expect((await get(external as string, port, '/healthz')).status).toBe(200);
    expect((await get(external as string, port, '/.well-known/idempotency-policy')).status).toBe(200);
    const proxied = await fetch(`http://${external}:${port}/pay`, {
      method: 'POST',
      headers: { 'idempotency-key': 'k1', authorization: 'Bearer someone' },
      body: '{}',
    });
    expect(proxied.status).toBe(201);
  });

  it('with a token: only its bearer, from anywhere', async () => {
    const port = await start({ adminToken: TOKEN, preset: 'openai' });
    for (const path of ['/metrics', '/savings']) {
      expect((await get('127.0.0.1', port, path)).status, `${path} no token`).toBe(401);
      expect(
        (await get('127.0.0.1', port, path, 'Bearer wrong-token-wrong-token')).status,
        `${path} wrong`,
      ).toBe(401);
      expect((await get('127.0.0.1', port, path, `Basic ${TOKEN}`)).status, `${path} scheme`).toBe(401);
      expect((await get('127.0.0.1', port, path, `bearer ${TOKEN}`)).status, `${path} right`).toBe(200);
      if (external) expect((await get(external, port, path, `Bearer ${TOKEN}`)).status).toBe(200);
    }
  });

  it('a weak token is refused at start-up', async () => {
    await expect(start({ adminToken: 'short' })).rejects.toThrow(/at least 16 characters/);
  });

  it('IDEM_ENCRYPTION_KEYS seals what the gateway stores', async () => {
    const before = process.env.IDEM_ENCRYPTION_KEYS;
    process.env.IDEM_ENCRYPTION_KEYS = `g1:${randomBytes(32).toString('base64')}`;
    try {
      const port = await start({ store: `sqlite:${join(dir, 'gw.db')}` });
      for (let i = 0; i < 2; i++) {
        const r = await fetch(`http://127.0.0.1:${port}/pay`, {
          method: 'POST',
          headers: { 'idempotency-key': 'sealed-1', authorization: 'Bearer a' },
          body: '{}',
        });
        expect(await r.text()).toContain('stored-body-secret');
        expect(r.headers.get('idempotent-replayed')).toBe(i === 0 ? null : 'true');
      }
    } finally {
      if (before === undefined) delete process.env.IDEM_ENCRYPTION_KEYS;
      else process.env.IDEM_ENCRYPTION_KEYS = before;
    }
    const bytes = readdirSync(dir)
      .map((f) => readFileSync(join(dir, f)).toString('latin1'))
      .join('');
    expect(bytes).toContain('e1:g1.');
    expect(bytes).not.toContain('stored-body-secret');
  });
});

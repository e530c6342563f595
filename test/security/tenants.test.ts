/**
 * Tenant isolation: the same idempotency key from two callers never shares a record, under every
 * credential header, while one caller's own spelling variants (header-name case, whitespace
 * around the value, the auth scheme's case and the spaces after it) keep one scope. Checked as a
 * property of the scope function, then end to end over raw sockets through the gateway and the
 * Express middleware, where an upstream echoes the credential it saw: a tenant only ever gets a
 * response made for its own credential.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import fc from 'fast-check';
import { createIdem, memoryStore } from 'idem';
import { idempotency, idempotencyErrors } from 'idem/express';
import { createGateway } from 'idem/gateway';
import { credentialScope } from 'idem/http';
import { afterAll, describe, expect, it } from 'vitest';

const HEADERS = ['authorization', 'proxy-authorization', 'x-api-key'] as const;
const scopeOf = (headers: Record<string, string>) => credentialScope(new Request('http://x', { headers }))[0];

/** Visible ASCII with inner spaces, never leading or trailing whitespace. */
const credential = fc.stringMatching(/^[!-~]([ !-~]{0,30}[!-~])?$/).filter((s) => !/[,;]/.test(s)); // cookies split on ';', and commas join repeated fields

describe('scope: a property of the credentials', () => {
  it('two different credentials never share a scope, in any credential header', () => {
    fc.assert(
      fc.property(fc.constantFrom(...HEADERS), credential, credential, (name, a, b) => {
        fc.pre(a !== b);
        const scheme = name.endsWith('authorization') ? 'Bearer ' : '';
        expect(scopeOf({ [name]: scheme + a })).not.toBe(scopeOf({ [name]: scheme + b }));
      }),
      { seed: 1201, numRuns: 2000 },
    );
  });

  it('credentials that differ only in whitespace inside them are two scopes', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...HEADERS),
        credential,
        credential,
        fc.constantFrom('  ', '\t', ' \t'),
        (name, a, b, gap) => {
          const scheme = name.endsWith('authorization') ? 'Bearer ' : '';
          expect(scopeOf({ [name]: `${scheme}${a} ${b}` })).not.toBe(
            scopeOf({ [name]: `${scheme}${a}${gap}${b}` }),
          );
        },
      ),
      { seed: 1204, numRuns: 300 },
    );
  });

  it('session cookies of two callers never share a scope', () => {
    fc.assert(
      fc.property(credential, credential, (a, b) => {
        fc.pre(a !== b && !a.includes('=') && !b.includes('='));
        expect(scopeOf({ cookie: `session=${a.replaceAll(' ', '')}x` })).not.toBe(
          scopeOf({ cookie: `session=${b.replaceAll(' ', '')}y` }),
        );
      }),
      { seed: 1202, numRuns: 500 },
    );
  });

  it("one caller's spelling variants keep one scope", () => {
    fc.assert(
      fc.property(
        credential,
        fc.constantFrom('', ' ', '\t', '  '),
        fc.constantFrom('Bearer', 'bearer', 'BEARER'),
        fc.constantFrom(' ', '  ', ' \t '),
        (token, pad, scheme, gap) => {
          const base = scopeOf({ authorization: `Bearer ${token}` });
          expect(scopeOf({ authorization: `${pad}${scheme}${gap}${token}${pad}` })).toBe(base);
          expect(scopeOf({ 'x-api-key': `${pad}${token}${pad}` })).toBe(scopeOf({ 'x-api-key': token }));
        },
      ),
      { seed: 1203, numRuns: 500 },
    );
  });

  it('a credential moved to another header is another scope', () => {
    const values = new Set(HEADERS.map((h) => scopeOf({ [h]: 'Bearer same' })));
    expect(values.size).toBe(HEADERS.length);
  });
});

/** Raw request keeping the header names exactly as given (case included). */
function send(
  url: string,
  headers: [string, string][],
  body: string,
): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method: 'POST', path: '/payments' });
    for (const [n, v] of headers) req.setHeader(n, v);
    req.setHeader('content-type', 'application/json');
    req.on('response', (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('tenants end to end: the same key, another credential', () => {
  let executions = 0;
  const upstream = http.createServer((req, res) => {
    executions++;
    const seen = HEADERS.map((h) => req.headers[h] ?? '').join('|');
    res
      .writeHead(201, { 'content-type': 'application/json' })
      .end(JSON.stringify({ for: seen, n: executions }));
  });
  const closers: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  async function targets() {
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => upstream.close(r)));
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const gateway = await createGateway({ store: 'memory', purgeEvery: false, upstream: upstreamUrl });
    closers.push(() => gateway.close());
    const app = express();
    app.use(idempotency({ idem: createIdem({ store: memoryStore() }) }));
    app.post('/payments', (req, res) => {
      executions++;
      const seen = HEADERS.map((h) => req.headers[h] ?? '').join('|');
      res.status(201).json({ for: seen, n: executions });
    });
    app.use(idempotencyErrors());
    const server = http.createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => server.close(r)));
    return {
      gateway: await gateway.listen(0),
      express: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    };
  }

  it('every credential header, both layers: each tenant gets only its own response', async () => {
    const urls = await targets();
    for (const [layer, url] of Object.entries(urls)) {
      for (const name of HEADERS) {
        const key = `shared-key-${layer}-${name}`;
        const scheme = name.endsWith('authorization') ? 'Bearer ' : '';
        const asA = [name, `${scheme}tenant-A`] as [string, string];
        const asB = [name, `${scheme}tenant-B`] as [string, string];
        const a = await send(
          urls[layer as keyof typeof urls],
          [['Idempotency-Key', key], asA],
          '{"amount":5}',
        );
        const b = await send(url, [['Idempotency-Key', key], asB], '{"amount":5}');
        expect([a.status, b.status], `${layer} ${name}`).toEqual([201, 201]);
        expect(b.body, `${layer} ${name}: B got A's response`).not.toBe(a.body);
        // a gateway consumes Proxy-Authorization (it is for the proxy) and does not forward it
        const echoed = !(layer === 'gateway' && name === 'proxy-authorization');
        if (echoed) {
          expect(JSON.parse(a.body).for, `${layer} ${name}`).toContain('tenant-A');
          expect(JSON.parse(b.body).for, `${layer} ${name}`).toContain('tenant-B');
        }
        // A again, spelled otherwise: the header name's case, whitespace, the scheme's case
        const upper = name.toUpperCase();
        const spelled = `  ${scheme.toLowerCase()}${scheme ? ' ' : ''}tenant-A  `;
        const again = await send(
          url,
          [
            ['IDEMPOTENCY-KEY', key],
            [upper, spelled],
          ],
          '{"amount":5}',
        );
        expect(again.body, `${layer} ${name}: A's replay`).toBe(a.body);
        // B's credential with one character's case changed is a third tenant
        const c = await send(
          url,
          [
            ['Idempotency-Key', key],
            [name, `${scheme}tenant-b`],
          ],
          '{"amount":5}',
        );
        expect(c.body, `${layer} ${name}: case-changed credential`).not.toBe(b.body);
        if (echoed) expect(JSON.parse(c.body).for, `${layer} ${name}`).toContain('tenant-b');
      }
    }
  });
});

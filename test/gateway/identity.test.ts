/**
 * The gateway's request identity comes from src/http: the scope is `credentialScope` over
 * `scopeHeaders` (so a record id matches the middleware's for the same credentials), the
 * fingerprint reads Node's headers through a structural `HeaderReader`, keyed requests without
 * credentials warn once, and its problem types are the shared `PROBLEMS`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { recordIdOf } from '../../src/core/keys.ts';
import { problem } from '../../src/gateway/respond.ts';
import { httpFingerprint } from '../../src/http/fingerprint.ts';
import { PROBLEM_BASE, PROBLEMS } from '../../src/http/problem.ts';
import { credentialScope } from '../../src/http/scope.ts';
import { memoryStore } from '../../src/index.ts';
import { post, type Stack, startStack } from './helpers.ts';

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

function capture() {
  const lines: string[] = [];
  return { lines, logger: { warn: (m: string) => void lines.push(m) } };
}

describe('gateway: scope', () => {
  it('a keyed request without credentials warns once, naming the scope headers', async () => {
    const { lines, logger } = capture();
    stack = await startStack({ logger });
    await post(stack.url, '/payments', { amount: 1 }, 'anon-1');
    await post(stack.url, '/payments', { amount: 1 }, 'anon-1');
    await post(stack.url, '/payments', { amount: 2 }, 'anon-2');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('without credentials (authorization, proxy-authorization, x-api-key, cookie)');
    expect(lines[0]).toContain("share one namespace ('anonymous')");
    expect(lines[0]).toContain('scopeHeaders');
  });

  it('no warning for requests with credentials or without a key', async () => {
    const { lines, logger } = capture();
    stack = await startStack({ logger });
    const a = await post(stack.url, '/payments', { amount: 1 }, 'cred-1', { authorization: 'Bearer a' });
    const b = await post(stack.url, '/payments', { amount: 1 });
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(lines).toEqual([]);
  });

  it('the record id is the middleware’s: credentialScope over the scope headers', async () => {
    const store = memoryStore();
    stack = await startStack({ store, logger: capture().logger });
    await post(stack.url, '/payments', { amount: 3 }, 'same-key', {
      authorization: 'Bearer a',
      cookie: 's=1',
    });
    const scope = credentialScope(
      new Request('http://x', { headers: { authorization: 'Bearer a', cookie: 's=1' } }),
    );
    expect(scope[0]).toMatch(/^cred:[0-9a-f]{64}$/);
    expect((await store.get(recordIdOf(['gateway', ...scope], 'same-key')))?.state).toBe('completed');
  });

  it('custom scopeHeaders: when present, only those headers scope the key, in their order', async () => {
    const store = memoryStore();
    const { lines, logger } = capture();
    stack = await startStack({ store, logger, scopeHeaders: ['X-Tenant', 'X-User'] });
    const before = stack.demo.executions.payments;
    await post(stack.url, '/payments', { amount: 4 }, 'k', { 'x-tenant': 't1', authorization: 'Bearer a' });
    // other credentials, same tenant: the same record, a replay
    const again = await post(stack.url, '/payments', { amount: 4 }, 'k', { 'x-tenant': 't1' });
    expect(again.headers['idempotent-replayed']).toBe('true');
    // another tenant: another record
    const other = await post(stack.url, '/payments', { amount: 4 }, 'k', { 'x-tenant': 't2' });
    expect(other.headers['idempotent-replayed']).toBeUndefined();
    expect(stack.demo.executions.payments).toBe(before + 2);
    const scope = credentialScope(new Request('http://x', { headers: { 'x-tenant': 't1' } }), [
      'x-tenant',
      'x-user',
    ]);
    expect((await store.get(recordIdOf(['gateway', ...scope], 'k')))?.state).toBe('completed');
    expect(lines).toEqual([]);
    // without them, the credential headers scope it (never the shared anonymous scope)
    const a = await post(stack.url, '/payments', { amount: 5 }, 'k2', { authorization: 'Bearer a' });
    const b = await post(stack.url, '/payments', { amount: 5 }, 'k2', { authorization: 'Bearer b' });
    expect(b.body.equals(a.body)).toBe(false);
    expect(lines).toEqual([]);
    await post(stack.url, '/payments', { amount: 5 }, 'k3');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('without credentials (x-tenant, x-user, authorization,');
  });
});

describe('identity helpers shared with src/http', () => {
  it('httpFingerprint reads any { get(name) } the same as Headers', () => {
    const body = Buffer.from('{"b":2,"a":1}');
    const plain: Record<string, string> = { 'content-type': 'application/json', 'api-version': '2' };
    const viaHeaders = httpFingerprint(
      { method: 'POST', url: 'http://x/p?b=1&a=2', headers: new Headers(plain), body },
      { headers: ['content-type', 'API-Version'] },
    );
    const viaReader = httpFingerprint(
      {
        method: 'POST',
        url: 'http://x/p?b=1&a=2',
        headers: { get: (n) => plain[n.toLowerCase()] ?? null },
        body,
      },
      { headers: ['content-type', 'API-Version'] },
    );
    expect(viaReader).toBe(viaHeaders);
    const otherVersion = httpFingerprint(
      {
        method: 'POST',
        url: 'http://x/p?b=1&a=2',
        headers: { get: (n) => (n === 'api-version' ? '3' : (plain[n] ?? null)) },
        body,
      },
      { headers: ['content-type', 'api-version'] },
    );
    expect(otherVersion).not.toBe(viaHeaders);
  });

  it('credentialScope: the default names, custom names, and anonymous', () => {
    const headers = { authorization: 'Bearer t', 'x-tenant': 'a' };
    const req = new Request('http://x', { headers });
    const reader = { headers: { get: (n: string) => headers[n as keyof typeof headers] ?? null } };
    expect(credentialScope(reader)).toEqual(credentialScope(req));
    expect(credentialScope(req, ['x-tenant'])).not.toEqual(credentialScope(req));
    expect(credentialScope(req, ['x-tenant'])).toEqual(credentialScope(reader, ['x-tenant']));
    expect(credentialScope(req, ['x-other'])).toEqual(['anonymous']);
    expect(credentialScope(req, [])).toEqual(['anonymous']);
  });

  it('the gateway’s upstream problems are shared PROBLEMS', () => {
    for (const [type, status] of [
      ['upstream-unavailable', 502],
      ['indeterminate-outcome', 502],
      ['upstream-timeout', 504],
    ] as const) {
      expect(PROBLEMS[type].status).toBe(status);
      const p = problem(type, 'why');
      expect(p.status).toBe(status);
      expect(JSON.parse(p.body as string)).toMatchObject({
        type: PROBLEM_BASE + type,
        title: PROBLEMS[type].title,
        status,
        detail: 'why',
      });
    }
  });
});

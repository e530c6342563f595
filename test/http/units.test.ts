import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { createIdem, InvalidOptionError, memoryStore } from 'idem';
import { createHttpIdempotency, defaultOutcomePolicy } from 'idem/http';
import { describe, expect, it } from 'vitest';
import { BodyTooLargeError, isJsonContentType, readLimited } from '../../src/http/body.ts';
import { httpFingerprint } from '../../src/http/fingerprint.ts';
import {
  connectionTokens,
  HOP_BY_HOP,
  isNeverReplayed,
  replayAllowList,
  storableHeaders,
} from '../../src/http/headers.ts';
import { parseIdempotencyKey } from '../../src/http/key.ts';
import { readNodeBody, webRequestOf } from '../../src/http/node.ts';
import { replayResponse, teeResponse } from '../../src/http/outcome.ts';
import { problemResponse } from '../../src/http/problem.ts';
import { createRetryEstimator } from '../../src/http/retry.ts';
import { credentialScope, credentialScopeOf } from '../../src/http/scope.ts';
import { parseTarget } from '../../src/http/target.ts';
import { bodyStream, recordingLogger } from './harness.ts';

describe('parseIdempotencyKey', () => {
  it.each([
    ['abc', 'abc'],
    ['"abc"', 'abc'],
    ['  "abc"  ', 'abc'],
    ['\tabc ', 'abc'],
    ['"a\\"b"', 'a"b'],
    ['"a\\\\b"', 'a\\b'],
    ['"a,b"', 'a,b'],
    ['8e03978e-40d5-43e8-bc93-6894a57f9324', '8e03978e-40d5-43e8-bc93-6894a57f9324'],
    ['a"b', 'a"b'],
  ])('accepts %j as %j', (field, key) => {
    expect(parseIdempotencyKey(field)).toEqual({ ok: true, key });
  });

  it.each([
    ['', 'empty'],
    ['   ', 'empty'],
    ['""', 'empty'],
    ['a, b', 'list'],
    ['a,b', 'list'],
    ['"a", "b"', 'list'],
    ['"a",b', 'list'],
    ['"abc', 'syntax'],
    ['"a\\nb"', 'syntax'],
    ['"abc";p=1', 'syntax'],
    ['"abc" x', 'syntax'],
    ['a b', 'characters'],
    ['"a b"', 'characters'],
    ['caf\u00e9', 'characters'],
    ['"caf\u00e9"', 'characters'],
    ['a\u0001', 'characters'],
    ['k'.repeat(256), 'too-long'],
    [`"${'k'.repeat(256)}"`, 'too-long'],
  ])('rejects %j (%s)', (field, reason) => {
    const r = parseIdempotencyKey(field);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toBe(reason);
      expect(r.detail.length).toBeGreaterThan(10);
    }
  });

  it('the 255-character limit applies after unescaping', () => {
    expect(parseIdempotencyKey(`"${'\\\\'.repeat(255)}"`)).toEqual({ ok: true, key: '\\'.repeat(255) });
  });
});

describe('httpFingerprint', () => {
  const h = (entries: Record<string, string> = { 'content-type': 'application/json' }) =>
    new Headers(entries);
  const enc = (s: string) => new TextEncoder().encode(s);
  const fp = (url: string, body: string, headers = h(), opts = {}, method = 'POST') =>
    httpFingerprint({ method, url, headers, body: enc(body) }, opts);

  it('is stable under JSON key order and whitespace, and under query order', () => {
    expect(fp('http://a/x?b=2&a=1', '{"a":1,"b":[1,2]}')).toBe(
      fp('http://a/x?a=1&b=2', '{ "b": [1, 2], "a": 1 }'),
    );
  });

  it('changes with method, path, query values, array order, body and selected headers', () => {
    const base = fp('http://a/x?a=1', '{"a":1}');
    expect(fp('http://a/x?a=1', '{"a":1}', h(), {}, 'PATCH')).not.toBe(base);
    expect(fp('http://a/y?a=1', '{"a":1}')).not.toBe(base);
    expect(fp('http://a/x?a=2', '{"a":1}')).not.toBe(base);
    expect(fp('http://a/x?a=1', '{"a":2}')).not.toBe(base);
    expect(fp('http://a/x?a=1&a=2', '{}')).not.toBe(fp('http://a/x?a=2&a=1', '{}'));
    expect(fp('http://a/x?a=1', '{"a":1}', h({ 'content-type': 'application/merge-patch+json' }))).not.toBe(
      base,
    );
  });

  it('ignores the host and unselected headers; honours configured ones', () => {
    const base = fp('http://a/x', '{}');
    expect(
      fp('http://other.example/x', '{}', h({ 'content-type': 'application/json', 'x-trace': '1' })),
    ).toBe(base);
    const opts = { headers: ['content-type', 'anthropic-version'] };
    const v1 = fp(
      'http://a/x',
      '{}',
      h({ 'content-type': 'application/json', 'anthropic-version': '1' }),
      opts,
    );
    const v2 = fp(
      'http://a/x',
      '{}',
      h({ 'content-type': 'application/json', 'anthropic-version': '2' }),
      opts,
    );
    expect(v1).not.toBe(v2);
  });

  it('drops excluded JSON fields, with wildcards', () => {
    const opts = { excludeFields: ['meta.ts', 'items.*.nonce'] };
    const a = fp('http://a/x', '{"x":1,"meta":{"ts":1},"items":[{"n":1,"nonce":"a"}]}', h(), opts);
    const b = fp('http://a/x', '{"x":1,"meta":{"ts":2},"items":[{"n":1,"nonce":"b"}]}', h(), opts);
    const c = fp('http://a/x', '{"x":1,"meta":{"ts":2},"items":[{"n":2,"nonce":"b"}]}', h(), opts);
    expect(a).toBe(b);
    expect(a).not.toBe(c);
  });

  it('hashes non-JSON and malformed JSON bodies as raw bytes', () => {
    const text = h({ 'content-type': 'text/plain' });
    expect(fp('http://a/x', '{"a":1,"b":2}', text)).not.toBe(fp('http://a/x', '{"b":2,"a":1}', text));
    expect(fp('http://a/x', '{not json', h())).not.toBe(fp('http://a/x', '{not  json', h()));
    expect(fp('http://a/x', '{"a":1}')).toMatch(/^http1:[0-9a-f]{64}$/);
  });
});

describe('headers, policy, problems, replay', () => {
  it('storableHeaders keeps the allow-list, drops never-replayed and Connection-named headers', () => {
    const headers = new Headers([
      ['content-type', 'application/json'],
      ['location', '/a'],
      ['set-cookie', 'a=1'],
      ['date', 'x'],
      ['x-ratelimit-limit', '5'],
      ['anthropic-ratelimit-requests-remaining', '5'],
      ['ratelimit-policy', 'x'],
      ['retry-after', '3'],
      ['connection', 'x-trace'],
      ['x-trace', '1'],
      ['x-other', '1'],
    ]);
    expect(storableHeaders(headers, replayAllowList(['x-trace', 'x-other']))).toEqual([
      ['content-type', 'application/json'],
      ['location', '/a'],
      ['x-other', '1'],
    ]);
  });

  it('HOP_BY_HOP and connectionTokens: the sets the gateway shares; every hop-by-hop header is never replayed', () => {
    for (const h of [
      'connection',
      'keep-alive',
      'te',
      'trailer',
      'transfer-encoding',
      'upgrade',
      'http2-settings',
    ]) {
      expect(HOP_BY_HOP.has(h)).toBe(true);
    }
    for (const h of HOP_BY_HOP) expect(isNeverReplayed(h)).toBe(true);
    expect(HOP_BY_HOP.has('content-type')).toBe(false);
    expect(connectionTokens(' Keep-Alive ,X-Trace,, ')).toEqual(new Set(['keep-alive', 'x-trace']));
    expect(connectionTokens(['close', 'X-A'])).toEqual(new Set(['close', 'x-a']));
    expect(connectionTokens(undefined).size).toBe(0);
    expect(connectionTokens(null).size).toBe(0);
  });

  it('replayAllowList refuses headers that must never be replayed', () => {
    for (const h of [
      'Set-Cookie',
      'date',
      'content-length',
      'transfer-encoding',
      'x-ratelimit-remaining',
      'retry-after',
    ]) {
      expect(() => replayAllowList([h])).toThrow(InvalidOptionError);
    }
  });

  it('defaultOutcomePolicy follows the table', () => {
    const release = [401, 403, 408, 409, 425, 429, 503, 529];
    for (let s = 200; s < 600; s++) {
      expect(defaultOutcomePolicy(s)).toBe(release.includes(s) ? 'release' : 'store');
    }
  });

  it('problemResponse builds RFC 9457 bodies under the configured base', async () => {
    const res = problemResponse('conflict', {
      detail: 'd',
      headers: { 'retry-after': '2' },
      base: 'https://x/p/',
    });
    expect(res.status).toBe(409);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('retry-after')).toBe('2');
    expect(await res.json()).toMatchObject({
      type: 'https://x/p/conflict',
      title: 'A request is outstanding for this Idempotency-Key',
      status: 409,
      detail: 'd',
    });
  });

  it('replayResponse marks replays, and ≥500 as not worth retrying', async () => {
    const ok = replayResponse({ status: 201, headers: [['etag', '"1"']], body: new Uint8Array([1, 2]) });
    expect(ok.headers.get('idempotent-replayed')).toBe('true');
    expect(ok.headers.get('x-should-retry')).toBeNull();
    expect(new Uint8Array(await ok.arrayBuffer())).toEqual(new Uint8Array([1, 2]));
    expect(
      replayResponse({ status: 502, headers: [], body: new Uint8Array() }).headers.get('x-should-retry'),
    ).toBe('false');
    expect(replayResponse({ status: 304, headers: [], body: new Uint8Array() }).body).toBeNull();
  });

  it('teeResponse collects up to maxBytes, then only counts: the result is omitted', async () => {
    const source = () => new Response(bodyStream('x'.repeat(5000)));
    const within = teeResponse(source(), Promise.resolve(), 5000);
    expect(await within.client.text()).toHaveLength(5000);
    expect(await within.collected).toMatchObject({ ok: true, bytes: 5000 });
    expect(((await within.collected) as { body: Uint8Array }).body.byteLength).toBe(5000);
    const over = teeResponse(source(), Promise.resolve(), 4999);
    expect(await over.client.text()).toHaveLength(5000);
    const c = await over.collected;
    expect(c).toMatchObject({ ok: true, bytes: 5000, omitted: true });
    expect((c as { body: Uint8Array }).body.byteLength).toBe(0);
  });

  it('teeResponse, past its limit, pulls from the handler only as fast as the client reads', async () => {
    let pulled = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(c) {
        pulled++;
        c.enqueue(new Uint8Array(4096));
        if (pulled === 100) c.close();
      },
    });
    const { client, collected } = teeResponse(new Response(source), Promise.resolve(), 16 * 1024);
    const reader = client.body!.getReader();
    await reader.read();
    await new Promise((r) => setTimeout(r, 50));
    expect(pulled).toBeLessThan(25); // the 16 KiB limit + 64 KiB of slack, not the whole 400 KiB
    await reader.cancel(); // a client that goes away: the rest is read and counted anyway
    expect(await collected).toMatchObject({ ok: true, bytes: 100 * 4096, omitted: true });
  });

  it('isJsonContentType', () => {
    expect(isJsonContentType('application/json')).toBe(true);
    expect(isJsonContentType('Application/JSON; charset=utf-8')).toBe(true);
    expect(isJsonContentType('application/vnd.api+json')).toBe(true);
    expect(isJsonContentType('text/json-ish')).toBe(false);
    expect(isJsonContentType(null)).toBe(false);
  });
});

describe('body limits and scope', () => {
  it('readLimited stops reading as soon as the limit is passed', async () => {
    let pulled = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        pulled++;
        c.enqueue(new Uint8Array(1024));
        if (pulled > 1000) c.close();
      },
    });
    await expect(readLimited(stream, 4096)).rejects.toThrow(/over the limit of 4096 bytes/);
    expect(pulled).toBeLessThan(10);
    expect((await readLimited(bodyStream('hello'), 5)).byteLength).toBe(5);
  });

  it('credentialScope hashes credentials and never returns them raw', () => {
    const a = credentialScope(new Request('http://x', { headers: { authorization: 'Bearer secret' } }));
    const b = credentialScope(new Request('http://x', { headers: { cookie: 'sid=1' } }));
    expect(a).toHaveLength(1);
    expect(a[0]).toMatch(/^cred:[0-9a-f]{64}$/);
    expect(a).not.toEqual(b);
    expect(credentialScope(new Request('http://x'))).toEqual(['anonymous']);
  });

  it('warns once that callers without credentials share one namespace; not for a custom scope', async () => {
    const keyed = (headers: Record<string, string> = {}) =>
      new Request('http://x/a', { method: 'POST', headers: { 'idempotency-key': 'k', ...headers } });
    const logger = recordingLogger();
    const core = createHttpIdempotency({ idem: createIdem({ store: memoryStore() }), logger });
    await core.prepare(new Request('http://x/a', { method: 'POST' })); // no key: not served under one
    await core.prepare(keyed({ authorization: 'Bearer t' }));
    expect(logger.lines).toEqual([]);
    await core.prepare(keyed());
    await core.prepare(keyed());
    const warnings = logger.lines.filter((l) => l.includes('without credentials'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/share one namespace/);
    expect(warnings[0]).toMatch(/scope:/);
    const scoped = recordingLogger();
    const custom = createHttpIdempotency({
      idem: createIdem({ store: memoryStore() }),
      scope: () => 'tenant-1',
      logger: scoped,
    });
    await custom.prepare(keyed());
    expect(scoped.lines).toEqual([]);
  });

  it('a scope() answering non-strings is an InvalidOptionError', async () => {
    const core = createHttpIdempotency({
      idem: createIdem({ store: memoryStore() }),
      scope: () => [42] as unknown as string[],
    });
    const req = new Request('http://x/a', { method: 'POST', headers: { 'idempotency-key': 'k' } });
    await expect(core.prepare(req)).rejects.toBeInstanceOf(InvalidOptionError);
  });
});

describe('options', () => {
  const idem = createIdem({ store: memoryStore() });
  it.each([
    [{}],
    [{ idem, store: memoryStore() }],
    [{ idem, methods: ['GET'] }],
    [{ idem, header: 'bad header' }],
    [{ idem, bodyLimit: -1 }],
    [{ idem, maxRetryAfter: '2m' }],
    [{ idem, ttl: '1 fortnight' }],
    [{ idem, onStoreError: 'maybe' }],
    [{ idem, onInProgress: 'queue' }],
    [{ idem, replayHeaders: ['set-cookie'] }],
    [{ idem, scope: 'tenant' }],
  ])('rejects %j at setup', (options) => {
    expect(() => createHttpIdempotency(options as never)).toThrow(InvalidOptionError);
  });

  it('accepts { store } and builds its own engine', async () => {
    const core = createHttpIdempotency({ store: memoryStore(), ttl: '1h' });
    const req = () =>
      new Request('http://x/a', { method: 'POST', headers: { 'idempotency-key': 'k' }, body: 'b' });
    let n = 0;
    const next = async () => new Response(String(++n), { status: 201 });
    await core.handle(req(), next);
    expect(await (await core.handle(req(), next)).text()).toBe('1');
  });
});

describe('the shared pipeline', () => {
  it('parseTarget: origin-form as is, absolute-form reduced, anything else refused; never throws', () => {
    expect(parseTarget('/pay?x=1')).toEqual({ ok: true, path: '/pay', search: '?x=1' });
    expect(parseTarget('http://h.example/pay?x=1')).toEqual({ ok: true, path: '/pay', search: '?x=1' });
    expect(parseTarget('HTTPS://h.example/p')).toMatchObject({ ok: true, path: '/p' });
    for (const bad of [
      '*',
      'h:443',
      'ftp://x/y',
      'http://[x/y',
      '//[x/p',
      '//a:99999/p',
      'http://a:99999/p',
      '',
    ]) {
      const t = parseTarget(bad);
      expect(t.ok, bad).toBe(false);
      if (!t.ok) expect(t.refusal.type).toBe('invalid-target');
    }
  });

  it('the retry estimate: the recent median, capped by the lease left and maxRetryAfter, at least 1 s', () => {
    const retry = createRetryEstimator(2000);
    expect(retry.headers(29_000)).toEqual([
      ['retry-after', '2'],
      ['retry-after-ms', '2000'],
    ]);
    for (const ms of [1500, 1400, 1600]) retry.record(ms);
    expect(retry.headers(29_000)).toEqual([
      ['retry-after', '2'],
      ['retry-after-ms', '1500'],
    ]);
    expect(retry.headers(300)[1]).toEqual(['retry-after-ms', '1000']);
  });

  it('credentialScopeOf: normalized values, duplicates refused, cookies by name', () => {
    const of = (headers: Record<string, string>, cookies?: string[]) =>
      credentialScopeOf({ headers: new Headers(headers) }, { cookies });
    expect(of({ authorization: 'bearer   t ' })).toEqual(of({ authorization: 'Bearer t' }));
    expect(of({ authorization: 'Bearer a' })).not.toEqual(of({ authorization: 'Bearer b' }));
    expect(of({ authorization: 'Bearer a, Bearer b' })).toEqual({ ok: false, duplicate: 'authorization' });
    expect(of({ 'x-api-key': 'a, b' })).toEqual({ ok: false, duplicate: 'x-api-key' });
    expect(of({ authorization: 'Digest username="a", realm="r"' }).ok).toBe(true);
    expect(of({ cookie: 'sid=1; _ga=2' }, ['sid'])).toEqual(of({ cookie: '_ga=3; sid=1' }, ['sid']));
    expect(of({ cookie: 'sid=1; sid=2' }, ['sid'])).toEqual({ ok: false, duplicate: 'cookie' });
    expect(of({ cookie: '_ga=1' }, ['sid'])).toMatchObject({ anonymous: true });
    // without configured names, cookies count only when no other credential is sent
    expect(of({ authorization: 'Bearer a', cookie: 'x=1' })).toEqual(of({ authorization: 'Bearer a' }));
    expect(of({ cookie: 'x=1' })).not.toEqual(of({ cookie: 'x=2' }));
  });

  it('the Node bridge: a bad target or Host never throws; the core answers 400', async () => {
    const core = createHttpIdempotency({
      idem: createIdem({ store: memoryStore() }),
      logger: recordingLogger(),
    });
    const fake = (url: string, rawHeaders: string[]) =>
      ({
        method: 'POST',
        url,
        rawHeaders,
        headers: Object.fromEntries(
          rawHeaders.flatMap((v, i) => (i % 2 ? [] : [[v.toLowerCase(), rawHeaders[i + 1]]])),
        ),
      }) as unknown as IncomingMessage;
    for (const target of ['//[x/payments', '//a:99999/payments', '*']) {
      const request = webRequestOf(fake(target, ['Host', 'x', 'Idempotency-Key', 'k']), target);
      const prepared = await core.prepare(request, async () => new Uint8Array(0));
      expect(prepared.action).toBe('respond');
      if (prepared.action === 'respond') expect(prepared.response.status).toBe(400);
    }
    const badHost = webRequestOf(fake('/p', ['Host', 'a:99999', 'Idempotency-Key', 'k']), '/p');
    expect(new URL(badHost.url).pathname).toBe('/p');
    const twice = webRequestOf(
      fake('/p', ['Host', 'x', 'Idempotency-Key', 'k', 'X-API-Key', 'a', 'X-API-Key', 'b']),
      '/p',
    );
    const prepared = await core.prepare(twice, async () => new Uint8Array(0));
    expect(prepared.action === 'respond' && prepared.response.status).toBe(400);
  });

  it('readNodeBody reads and discards past the limit before refusing (up to the drain limit)', async () => {
    const chunks = Array.from({ length: 32 }, () => Buffer.alloc(64 * 1024, 'a')); // 2 MiB
    const stream = Readable.from(chunks);
    await expect(readNodeBody(stream, 1024 * 1024)).rejects.toBeInstanceOf(BodyTooLargeError);
    expect(stream.readableEnded).toBe(true); // drained: the client can read the 413
    const huge = Readable.from(chunks);
    await expect(readNodeBody(huge, 1024, 256 * 1024)).rejects.toBeInstanceOf(BodyTooLargeError);
    expect(huge.readableEnded).toBe(false); // past the drain limit: stop at once
  });
});

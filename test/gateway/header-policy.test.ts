/**
 * One header policy for the gateway: the allow-list governs what is stored, replayed and shown
 * to attach joiners; the live holder gets the upstream's response minus hop-by-hop headers
 * (its set-cookie included); a header echoing the derived downstream key is rewritten to the
 * client's own key. Plus the route fields maxKeyLength, replayHeader and shouldRetryHeaders.
 */
import type http from 'node:http';
import { createGateway, type Gateway } from 'idem/gateway';
import { afterEach, describe, expect, it } from 'vitest';
import { post, startUpstream } from './helpers.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A Stripe-like upstream: echoes the Idempotency-Key it got, sets a cookie, streams slowly. */
async function stripeLike(status = 201) {
  let calls = 0;
  const upstream = await startUpstream((req: http.IncomingMessage, res: http.ServerResponse) => {
    calls++;
    req.resume();
    req.on('end', () => {
      res.writeHead(status, {
        'content-type': 'application/json',
        'idempotency-key': String(req.headers['idempotency-key']),
        'stripe-version': '2024-06-20',
        'request-id': 'req_1',
        'x-internal-trace': 'secret',
        'set-cookie': 'session=abc',
      });
      res.write('{"id":');
      setTimeout(() => res.end('"ch_1"}'), 300);
    });
  });
  cleanups.push(() => upstream.close());
  return { url: upstream.url, calls: () => calls };
}

async function gateway(upstream: string, route: Record<string, unknown>): Promise<string> {
  const gw: Gateway = await createGateway({
    upstream,
    store: 'memory',
    purgeEvery: false,
    routes: [{ path: '/*', ...route }],
  });
  cleanups.push(() => gw.close());
  return gw.listen(0);
}

describe('gateway header policy', () => {
  it('live keeps its own headers with the echo rewritten; joiners and replays get only the allow-list', async () => {
    const up = await stripeLike();
    const url = await gateway(up.url, {
      concurrency: 'attach',
      replayHeaders: ['stripe-version', 'request-id', 'idempotency-key'],
    });
    const live = post(url, '/v1/charges', { amount: 5 }, 'client-key-1');
    await new Promise((r) => setTimeout(r, 150));
    const joiner = await post(url, '/v1/charges', { amount: 5 }, 'client-key-1');
    const first = await live;
    const replay = await post(url, '/v1/charges', { amount: 5 }, 'client-key-1');
    expect(up.calls()).toBe(1);

    expect(first.headers['idempotency-key']).toBe('client-key-1'); // never the derived idem_… key
    expect(first.headers['set-cookie']).toEqual(['session=abc']); // the live caller logged in
    expect(first.headers['x-internal-trace']).toBe('secret');
    for (const [name, r] of [
      ['joiner', joiner],
      ['replay', replay],
    ] as const) {
      expect(r.text, name).toBe('{"id":"ch_1"}');
      expect(r.headers['idempotent-replayed'], name).toBe('true');
      expect(r.headers['idempotency-key'], name).toBe('client-key-1');
      expect(r.headers['stripe-version'], name).toBe('2024-06-20');
      expect(r.headers['request-id'], name).toBe('req_1');
      expect(r.headers['set-cookie'], name).toBeUndefined();
      expect(r.headers['x-internal-trace'], name).toBeUndefined();
    }
  });

  it('a downstream-key echo that is not allow-listed is dropped from replays', async () => {
    const up = await stripeLike();
    const url = await gateway(up.url, {});
    await post(url, '/v1/charges', { amount: 5 }, 'k2');
    const replay = await post(url, '/v1/charges', { amount: 5 }, 'k2');
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.headers['idempotency-key']).toBeUndefined();
  });

  it('replayHeader and shouldRetryHeaders rename the markers on live 5xx, replays and problems', async () => {
    const up = await stripeLike(500);
    const url = await gateway(up.url, {
      replayHeader: ['Idempotent-Replayed', 'Idempotency-Replayed'],
      shouldRetryHeaders: ['x-should-retry', 'stripe-should-retry'],
    });
    const live = await post(url, '/v1/charges', { amount: 5 }, 'k5');
    const replay = await post(url, '/v1/charges', { amount: 5 }, 'k5');
    const mismatch = await post(url, '/v1/charges', { amount: 6 }, 'k5');
    expect(live.status).toBe(500);
    expect(live.headers['stripe-should-retry']).toBe('false');
    expect(replay.headers['stripe-should-retry']).toBe('false');
    expect(replay.headers['x-should-retry']).toBe('false');
    expect(replay.headers['idempotency-replayed']).toBe('true');
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(mismatch.status).toBe(422);
    expect(mismatch.headers['stripe-should-retry']).toBe('false');
  });

  it('maxKeyLength: 255 by default, raised per route', async () => {
    const up = await stripeLike();
    const url = await gateway(up.url, {});
    expect((await post(url, '/v1/charges', { a: 1 }, 'k'.repeat(256))).status).toBe(400);
    const raised = await gateway(up.url, { maxKeyLength: 600 });
    const long = 'k'.repeat(500);
    expect((await post(raised, '/v1/charges', { a: 1 }, long)).status).toBe(201);
    const again = await post(raised, '/v1/charges', { a: 1 }, long);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect((await post(raised, '/v1/charges', { a: 1 }, 'k'.repeat(601))).status).toBe(400);
    await expect(gateway(up.url, { maxKeyLength: 5000 })).rejects.toThrow(/maxKeyLength/);
  });
});

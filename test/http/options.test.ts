/**
 * Options objects refuse names they do not know, naming the nearest valid one: a misspelt
 * option must never quietly protect nothing.
 */

import Fastify from 'fastify';
import { createIdem, InvalidOptionError, memoryStore } from 'idem';
import { idempotency as expressIdempotency } from 'idem/express';
import { idempotency as fastifyIdempotency } from 'idem/fastify';
import { createGateway } from 'idem/gateway';
import { idempotency as honoIdempotency } from 'idem/hono';
import { withIdempotency } from 'idem/http';
import { describe, expect, it } from 'vitest';

const idem = createIdem({ store: memoryStore() });
const handler = async () => new Response('ok');

describe('unknown options', () => {
  it.each([
    ['withIdempotency', (o: object) => withIdempotency(handler, { idem, ...o })],
    ['express', (o: object) => expressIdempotency({ idem, ...o })],
    ['fastify', (o: object) => fastifyIdempotency({ idem, ...o })],
    ['hono', (o: object) => honoIdempotency({ idem, ...o })],
  ])('%s refuses headerName, suggesting header', (_name, build) => {
    expect(() => build({ headerName: 'X-Request-Id' })).toThrow(InvalidOptionError);
    expect(() => build({ headerName: 'X-Request-Id' })).toThrow(
      'unknown option headerName — did you mean header?',
    );
    expect(() => build({ requird: true })).toThrow('did you mean required?');
    expect(() => build({ ttL: '1h' })).toThrow('did you mean ttl?');
  });

  it('idempotencyErrors() refuses unknown options too', async () => {
    const { idempotencyErrors } = await import('idem/express');
    expect(() => idempotencyErrors({ problemBse: 'x' } as object)).toThrow('did you mean problemBase?');
  });

  it('a name nothing is near lists the known options', () => {
    expect(() => withIdempotency(handler, { idem, zzzzzzzzzzzz: 1 } as object)).toThrow(
      /unknown option zzzzzzzzzzzz \(known: idem, store,/,
    );
  });

  it('a Fastify route override with an unknown option is refused when the route is declared', async () => {
    const app = Fastify();
    await app.register(fastifyIdempotency({ idem }));
    expect(() =>
      app.post('/x', { config: { idempotency: { requierd: true } as object } }, async () => ({ ok: 1 })),
    ).toThrow('unknown option requierd — did you mean required?');
    await app.close();
  });

  it.each([
    [{ keyHeadr: 'x-key' }, 'unknown option keyHeadr — did you mean keyHeader?'],
    [
      { routes: [{ path: '/p', concurency: 'wait' }] },
      'unknown option routes[0].concurency — did you mean routes[0].concurrency?',
    ],
    [{ defaults: { tll: '1h' } }, 'unknown option defaults.tll — did you mean defaults.ttl?'],
    [{ endpoints: { helth: '/h' } }, 'unknown option endpoints.helth — did you mean endpoints.health?'],
  ])('the gateway refuses %o', async (extra, message) => {
    await expect(
      createGateway({ upstream: 'http://127.0.0.1:9', store: memoryStore(), ...(extra as object) }),
    ).rejects.toThrow(message);
  });
});

describe('marker header names', () => {
  // A marker named like a header the response owns would overwrite it on every replay or
  // problem: `content-type: true`, `content-length: true`, `transfer-encoding: true`.
  it.each([
    { replayHeader: 'content-type' },
    { replayHeader: ['Idempotent-Replayed', 'Content-Length'] },
    { replayHeader: 'transfer-encoding' },
    { replayHeader: 'set-cookie' },
    { shouldRetryHeaders: ['content-type'] },
    { shouldRetryHeaders: ['x-should-retry', 'retry-after'] },
  ])('%o is refused by the middleware and the gateway', async (o) => {
    expect(() => withIdempotency(handler, { idem, ...o })).toThrow(InvalidOptionError);
    expect(() => withIdempotency(handler, { idem, ...o })).toThrow(/is not a marker/);
    await expect(
      createGateway({ upstream: 'http://127.0.0.1:9', store: memoryStore(), routes: [{ path: '/x', ...o }] }),
    ).rejects.toThrow(/routes\[0\]\.(replayHeader|shouldRetryHeaders).*is not a marker/);
  });

  it('the documented spellings stay accepted', () => {
    expect(() =>
      withIdempotency(handler, {
        idem,
        replayHeader: ['Idempotent-Replayed', 'Idempotency-Replayed'],
        shouldRetryHeaders: ['x-should-retry', 'stripe-should-retry'],
      }),
    ).not.toThrow();
  });
});

describe('the factory used as the middleware', () => {
  it('app.use(idempotency) in Express answers an error that shows the right call, not "unknown option _events"', async () => {
    const express = (await import('express')).default;
    const app = express();
    app.use(expressIdempotency as never);
    app.post('/p', (_q, res) => void res.json({}));
    let seen: unknown;
    app.use((e: unknown, _q: unknown, res: { status(n: number): { end(): void } }, _n: unknown) => {
      seen = e;
      res.status(500).end();
    });
    const server = app.listen(0);
    await new Promise((r) => server.once('listening', r));
    try {
      const port = (server.address() as { port: number }).port;
      expect((await fetch(`http://127.0.0.1:${port}/p`, { method: 'POST' })).status).toBe(500);
      expect(seen).toBeInstanceOf(InvalidOptionError);
      expect((seen as Error).message).toMatch(/use idempotency\(\{ idem \}\) as the middleware/);
    } finally {
      server.close();
    }
  });

  it('app.use(idempotency) in Hono is refused the same way', async () => {
    const { Hono } = await import('hono');
    const app = new Hono();
    let seen: unknown;
    app.onError((e, c) => {
      seen = e;
      return c.text('x', 500);
    });
    app.use(honoIdempotency as never);
    app.post('/p', (c) => c.json({}));
    expect((await app.request('/p', { method: 'POST' })).status).toBe(500);
    expect((seen as Error).message).toMatch(/use idempotency\(\{ idem \}\) as the middleware/);
  });
});

/**
 * A waiting duplicate whose client closed its connection stops waiting and runs nothing, in
 * the Node adapters too (Express, Fastify): their web Request carries a signal that aborts
 * when the client's connection closes before the response finished.
 */
import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { createIdem, memoryStore } from 'idem';
import { idempotency as expressIdempotency } from 'idem/express';
import { idempotency as fastifyIdempotency } from 'idem/fastify';
import { afterEach, describe, expect, it } from 'vitest';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

interface Counted {
  base: string;
  runs(): number;
  /** The onEvent types seen, in order. */
  events: string[];
}

/** The handler takes 300 ms and answers 503 (released): a waiter still there would run it. */
async function expressApp(): Promise<Counted> {
  let runs = 0;
  const events: string[] = [];
  const app = express();
  const mw = expressIdempotency({
    idem: createIdem({ store: memoryStore() }),
    onEvent: (e) => void events.push(e.type),
  });
  app.post('/pay', mw, async (_req, res) => {
    runs++;
    await pause(300);
    res.status(503).json({ busy: true });
  });
  const server = app.listen(0);
  await new Promise((r) => server.once('listening', r));
  closers.push(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, runs: () => runs, events };
}

async function fastifyApp(): Promise<Counted> {
  let runs = 0;
  const events: string[] = [];
  const app = Fastify();
  await app.register(
    fastifyIdempotency({
      idem: createIdem({ store: memoryStore() }),
      onEvent: (e) => void events.push(e.type),
    }),
  );
  app.post('/pay', async (_req, reply) => {
    runs++;
    await pause(300);
    return reply.code(503).send({ busy: true });
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  const port = ((app.server as Server).address() as AddressInfo).port;
  return { base: `http://127.0.0.1:${port}`, runs: () => runs, events };
}

/** A keyed POST whose connection is destroyed after `abortAfter` ms. */
function departing(base: string, key: string, abortAfter: number): Promise<void> {
  return new Promise((resolve) => {
    const req = httpRequest(`${base}/pay`, {
      method: 'POST',
      headers: { 'idempotency-key': key, 'content-type': 'application/json', connection: 'close' },
    });
    req.on('error', () => resolve());
    req.on('response', () => resolve());
    req.end('{"a":1}');
    setTimeout(() => {
      req.destroy();
      resolve();
    }, abortAfter);
  });
}

const keyed = (key: string): RequestInit => ({
  method: 'POST',
  headers: { 'idempotency-key': key, 'content-type': 'application/json' },
  body: '{"a":1}',
});

describe.each([
  ['express', expressApp],
  ['fastify', fastifyApp],
])('%s: client disconnect while waiting', (_name, start) => {
  it('a waiting duplicate whose client went away runs nothing', async () => {
    const { base, runs, events } = await start();
    const first = fetch(`${base}/pay`, keyed('gone'));
    await pause(50);
    await departing(base, 'gone', 50);
    expect((await first).status).toBe(503); // released
    await pause(150);
    expect(runs()).toBe(1);
    expect(events).toEqual(['miss']); // the departed waiter is neither a hit nor a second miss
  });
});

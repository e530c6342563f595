/**
 * Fuzz slice, middleware: the same generated hostile requests against the web-standard
 * `withIdempotency` (served by a minimal node:http bridge, as a runtime would) and the Express
 * adapter, over raw sockets and fetch, each handler counting its runs per key + scope.
 * Seeded: set IDEM_FUZZ_SEED to replay a run. See check.ts for what is asserted.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import express from 'express';
import Fastify, { type FastifyReply } from 'fastify';
import { Hono } from 'hono';
import { createIdem, memoryStore } from 'idem';
import { idempotency, idempotencyErrors } from 'idem/express';
import { idempotency as fastifyIdempotency } from 'idem/fastify';
import { idempotency as honoIdempotency } from 'idem/hono';
import { withIdempotency } from 'idem/http';
import { afterAll, describe, expect, it } from 'vitest';
import { answerBeforeDiscarding } from '../../src/http/node.ts';
import { type FuzzCase, generateGroups, SEED } from './cases.ts';
import {
  createLedger,
  doubleRuns,
  EXEC_HEADER,
  execBody,
  probeUnhandled,
  report,
  runGroups,
  sampleRss,
  sliceTimeout,
  type Violation,
} from './check.ts';

/** Per middleware; `npm run fuzz` sets IDEM_FUZZ_REQUESTS=100000 for the full run. */
const REQUESTS = Number(process.env.IDEM_FUZZ_REQUESTS ?? 1300);
const servers: http.Server[] = [];
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  for (const close of closers) await close();
});

async function listen(server: http.Server): Promise<{ port: number; url: string }> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { port, url: `http://127.0.0.1:${port}` };
}

/** Quiet logger that keeps what idem reported. */
function quietLogger() {
  const errors: string[] = [];
  return { errors, logger: { warn: () => {}, error: (m: string) => void errors.push(m) } };
}

const tag = (h: Headers | http.IncomingHttpHeaders, name: string) =>
  (h instanceof Headers ? h.get(name) : (h[name] as string | undefined)) ?? undefined;

/** Serves a fetch-style handler through a bridge that builds a `Request` like a runtime would. */
async function serveFetch(fetchHandler: (request: Request) => Promise<Response>) {
  const throws: [string, string][] = [];
  const server = http.createServer(async (req, res) => {
    let request: Request;
    try {
      const headers = new Headers();
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
        headers.append(req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string);
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
      request = new Request(new URL(req.url ?? '/', 'http://127.0.0.1'), {
        method: req.method,
        headers,
        ...(hasBody && { body: Readable.toWeb(req) as ReadableStream, duplex: 'half' }),
      } as RequestInit);
    } catch {
      // What a runtime does with a request it cannot represent; not idem's answer.
      res.writeHead(400, { 'x-fuzz-bridge': '1', [EXEC_HEADER]: 'bridge' }).end();
      return;
    }
    try {
      const response = await fetchHandler(request);
      // a well-behaved runtime reads and drops what is left of the body before it closes, so a
      // client still sending (a refused 2 MiB upload) reads the answer instead of a reset
      await answerBeforeDiscarding(req, res, response);
    } catch (error) {
      if (req.errored && error === req.errored) {
        // The client's own body stream failed (it hung up mid-body, or Node's parser refused
        // the framing): passed on to the platform as is, which answers like a transport error.
        res.writeHead(400).end();
        return;
      }
      throws.push([req.headers['x-fuzz-case'] as string, String((error as Error)?.stack ?? error)]);
      res.writeHead(599).end();
    }
  });
  return { ...(await listen(server)), throws };
}

type Ledger = ReturnType<typeof createLedger>;
type Log = ReturnType<typeof quietLogger>;

/** The web-standard `withIdempotency`. */
function startWeb(ledger: Ledger, log: Log) {
  const handler = withIdempotency(
    async (req: Request) => {
      const body = new Uint8Array(await req.arrayBuffer());
      const id = tag(req.headers, 'x-fuzz-case');
      ledger.record(id, tag(req.headers, 'x-fuzz-logical'));
      return new Response(execBody(id, body), {
        status: 201,
        headers: { 'content-type': 'application/json', [EXEC_HEADER]: '1' },
      });
    },
    { idem: createIdem({ store: memoryStore() }), logger: log.logger },
  );
  return serveFetch(handler);
}

/** The Hono adapter, served through the same bridge (`app.fetch`). */
function startHono(ledger: Ledger, log: Log) {
  const app = new Hono();
  app.use('*', honoIdempotency({ idem: createIdem({ store: memoryStore() }), logger: log.logger }));
  app.all('*', async (c) => {
    const body = new Uint8Array(await c.req.arrayBuffer());
    const id = c.req.header('x-fuzz-case');
    ledger.record(id, c.req.header('x-fuzz-logical'));
    return new Response(execBody(id, body), {
      status: 201,
      headers: { 'content-type': 'application/json', [EXEC_HEADER]: '1' },
    });
  });
  // a client that hung up mid-body: the bridge's answer to a transport error, as for the others
  app.onError((error) => {
    if ((error as Error).message === 'aborted') return new Response(null, { status: 400 });
    throw error;
  });
  return serveFetch(async (request) => app.fetch(request));
}

/** The Fastify plugin on Fastify's own server. */
async function startFastify(ledger: Ledger, log: Log) {
  // Requests Fastify itself refuses before any hook runs (a method it does not route, a URL it
  // cannot decode, broken framing) get a bodiless 400 like Node's own parser gives the other
  // targets, so the checker counts them as transport answers, not idem's.
  const app = Fastify({
    logger: false,
    frameworkErrors: (_error, _req, reply) => void (reply as FastifyReply).code(400).send(),
    clientErrorHandler: (_error, socket) =>
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'),
  });
  await app.register(fastifyIdempotency({ idem: createIdem({ store: memoryStore() }), logger: log.logger }));
  // every body reaches the handler as the bytes sent, as with the other targets
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.all('/*', async (req, reply) => {
    const id = req.headers['x-fuzz-case'] as string | undefined;
    ledger.record(id, req.headers['x-fuzz-logical'] as string | undefined);
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    reply.code(201).header(EXEC_HEADER, '1').type('application/json');
    return reply.send(execBody(id, raw));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  const port = (app.server.address() as AddressInfo).port;
  return { port, url: `http://127.0.0.1:${port}`, throws: [] as [string, string][] };
}

async function startExpress(ledger: Ledger, log: Log) {
  const app = express();
  app.use(idempotency({ idem: createIdem({ store: memoryStore() }), logger: log.logger }));
  app.use((req: express.Request & { rawBody?: Buffer }, res) => {
    const id = req.get('x-fuzz-case');
    ledger.record(id, req.get('x-fuzz-logical'));
    res
      .status(201)
      .set(EXEC_HEADER, '1')
      .type('application/json')
      .send(execBody(id, req.rawBody ?? Buffer.alloc(0)));
  });
  app.use(idempotencyErrors());
  return { ...(await listen(http.createServer(app))), throws: [] as [string, string][] };
}

describe('fuzz: middleware', () => {
  const starts = { web: startWeb, express: startExpress, fastify: startFastify, hono: startHono };
  const seeds = { web: 0x5eb, express: 0xe4b, fastify: 0xfa5, hono: 0x40e };
  for (const name of ['web', 'express', 'fastify', 'hono'] as const) {
    it(
      `${name}: ${REQUESTS} generated requests: documented answers only, no 5xx, no hang, at most one run per key`,
      async () => {
        const probe = probeUnhandled();
        const ledger = createLedger();
        const log = quietLogger();
        const target = await starts[name](ledger, log);
        const groups = generateGroups(SEED ^ seeds[name], REQUESTS, name[0] as string);
        const rss = sampleRss(); // after the cases are built: what serving them costs
        const cases = new Map<string, FuzzCase>(groups.flatMap((g) => g.cases.map((c) => [c.id, c])));
        const { violations, sent } = await runGroups(groups, target, 16);
        const all: Violation[] = [...violations, ...doubleRuns(ledger, cases)];
        const throws = target.throws;
        for (const [id, stack] of throws) {
          const c = cases.get(id) as FuzzCase;
          all.push({
            cause: `withIdempotency threw: ${stack.split('\n')[0]}`,
            case: c,
            detail: stack.replace(/\s+/g, ' '),
          });
        }
        probe.stop();
        const after = await fetch(`${target.url}/payments`, {
          method: 'POST',
          headers: {
            'idempotency-key': 'after-fuzz',
            authorization: 'Bearer after',
            'content-type': 'application/json',
          },
          body: '{"ok":true}',
          signal: AbortSignal.timeout(5000),
        }).catch((e: Error) => e);
        const memory = rss.stop();
        const text = `${report(name, SEED, sent, all)}\n  (idem logged ${log.errors.length} errors; ${memory.text})`;
        console.log(text);
        expect(sent).toBeGreaterThanOrEqual(REQUESTS);
        expect(memory.peak - memory.start, `RSS bounded: ${memory.text}`).toBeLessThan(512);
        expect(probe.seen, 'unhandled rejections / uncaught exceptions').toEqual([]);
        expect(
          after instanceof Response ? after.status : String(after),
          'a normal request after the fuzz',
        ).toBe(201);
        expect(all.length, text).toBe(0);
      },
      sliceTimeout(REQUESTS),
    );
  }
});

import { Readable } from 'node:stream';
import Fastify from 'fastify';
import { idempotency } from 'idem/fastify';
import { type AdapterHarness, pause, testResponse } from './harness.ts';
import { testHttpAdapter } from './suite.ts';

function bodyText(body: unknown): string {
  if (body === undefined || body === null) return '';
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  return typeof body === 'string' ? body : JSON.stringify(body);
}

export const fastifyHarness: AdapterHarness = {
  name: 'fastify',
  serverDate: true,
  async start(options, handler) {
    const app = Fastify();
    await app.register(idempotency(options));
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    app.route({
      method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
      url: '/*',
      handler: async (req, reply) => {
        const url = new URL(req.url, 'http://x');
        const result = await handler({
          method: req.method,
          path: url.pathname,
          query: url.search,
          headers: new Headers(req.headers as Record<string, string>),
          body: bodyText(req.body),
          info: req.idempotency ?? undefined,
        });
        reply.code(result.status);
        for (const [n, v] of result.headers ?? []) reply.header(n, v);
        if (result.chunks) {
          const chunks = result.chunks;
          return reply.send(
            Readable.from(
              (async function* () {
                for (const c of chunks) {
                  yield typeof c === 'string' ? Buffer.from(c) : Buffer.from(c);
                  await pause(5);
                }
              })(),
            ),
          );
        }
        return reply.send(result.body instanceof Uint8Array ? Buffer.from(result.body) : (result.body ?? ''));
      },
    });
    await app.ready();
    return {
      async send(method, path, init = {}) {
        const headers: Record<string, string | string[]> = {};
        for (const [n, v] of init.headers ?? []) {
          const prev = headers[n];
          headers[n] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v];
        }
        const body =
          init.body === undefined
            ? undefined
            : typeof init.body === 'string'
              ? Buffer.from(init.body)
              : Buffer.from(init.body);
        const payload =
          body && init.stream ? Readable.from([body.subarray(0, 512), body.subarray(512)]) : body;
        const res = await app.inject({
          method: method as 'POST',
          url: path,
          headers,
          ...(payload && { payload }),
        });
        const out = new Headers();
        for (const [n, v] of Object.entries(res.headers)) {
          for (const x of Array.isArray(v) ? v : [v]) if (x !== undefined) out.append(n, String(x));
        }
        return testResponse(res.statusCode, out, new Uint8Array(res.rawPayload));
      },
      close: () => app.close(),
    };
  },
};

testHttpAdapter(fastifyHarness);

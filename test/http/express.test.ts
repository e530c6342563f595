import type { AddressInfo } from 'node:net';
import express from 'express';
import { idempotency, idempotencyErrors } from 'idem/express';
import type { IdempotencyInfo } from 'idem/http';
import { type AdapterHarness, bodyStream, fromFetchResponse, pause } from './harness.ts';
import { testHttpAdapter } from './suite.ts';

function bodyText(body: unknown): string {
  if (body === undefined) return '';
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  return typeof body === 'string' ? body : JSON.stringify(body);
}

export const expressHarness = (withJsonParser: boolean): AdapterHarness => ({
  name: withJsonParser ? 'express (after express.json())' : 'express (no body parser)',
  serverDate: true,
  async start(options, handler) {
    const app = express();
    if (withJsonParser) app.use(express.json());
    app.use(idempotency(options));
    app.use(async (req, res) => {
      const url = new URL(req.originalUrl, 'http://x');
      const reply = await handler({
        method: req.method,
        path: url.pathname,
        query: url.search,
        headers: new Headers(req.headers as Record<string, string>),
        body: bodyText(req.body),
        info: res.locals.idempotency as IdempotencyInfo | undefined,
      });
      res.status(reply.status);
      for (const [n, v] of reply.headers ?? []) res.append(n, v);
      if (reply.chunks) {
        for (const chunk of reply.chunks) {
          res.write(typeof chunk === 'string' ? chunk : Buffer.from(chunk));
          await pause(5);
        }
        res.end();
      } else if (reply.body instanceof Uint8Array) res.send(Buffer.from(reply.body));
      else res.send(reply.body ?? '');
    });
    app.use(idempotencyErrors());
    app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(500).json({ error: error.message });
    });
    const server = app.listen(0);
    await new Promise((r) => server.once('listening', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return {
      async send(method, path, init = {}) {
        const headers = new Headers();
        for (const [n, v] of init.headers ?? []) headers.append(n, v);
        const body = init.body === undefined ? undefined : init.stream ? bodyStream(init.body) : init.body;
        return fromFetchResponse(
          await fetch(base + path, { method, headers, body, duplex: 'half' } as RequestInit),
        );
      },
      async close() {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      },
    };
  },
});

testHttpAdapter(expressHarness(true));
testHttpAdapter(expressHarness(false));

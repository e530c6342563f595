import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hono } from 'hono';
import { idempotency } from 'idem/hono';
import { sqliteStore } from 'idem/sqlite';
import { afterAll } from 'vitest';
import { type AdapterHarness, bodyStream, fromFetchResponse, replyToResponse } from './harness.ts';
import { testHttpAdapter } from './suite.ts';

export const honoHarness: AdapterHarness = {
  name: 'hono',
  serverDate: false,
  async start(options, handler) {
    const app = new Hono();
    app.use('*', idempotency(options));
    app.all('*', async (c) => {
      const url = new URL(c.req.url);
      const reply = await handler({
        method: c.req.method,
        path: url.pathname,
        query: url.search,
        headers: c.req.raw.headers,
        body: await c.req.text(),
        info: c.get('idempotency'),
      });
      return replyToResponse(reply);
    });
    app.onError((error, c) => c.json({ error: error.message }, 500));
    return {
      async send(method, path, init = {}) {
        const headers = new Headers();
        for (const [n, v] of init.headers ?? []) headers.append(n, v);
        const body = init.body === undefined ? undefined : init.stream ? bodyStream(init.body) : init.body;
        return fromFetchResponse(
          await app.request(path, { method, headers, body, duplex: 'half' } as RequestInit),
        );
      },
      close: async () => {},
    };
  },
};

testHttpAdapter(honoHarness);

const dir = mkdtempSync(join(tmpdir(), 'idem-http-sqlite-'));
let n = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));
testHttpAdapter(honoHarness, {
  label: 'sqlite store',
  store: () => sqliteStore({ path: join(dir, `t${n++}.db`) }),
});

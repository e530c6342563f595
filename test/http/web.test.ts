import { idempotencyInfo, withIdempotency } from 'idem/http';
import { type AdapterHarness, bodyStream, fromFetchResponse, replyToResponse } from './harness.ts';
import { testHttpAdapter } from './suite.ts';

/** withIdempotency, called directly the way Next.js, Bun, Deno and Workers call a handler. */
export const webHarness: AdapterHarness = {
  name: 'withIdempotency',
  serverDate: false,
  async start(options, handler) {
    const endpoint = withIdempotency(async (req: Request) => {
      const url = new URL(req.url);
      const reply = await handler({
        method: req.method,
        path: url.pathname,
        query: url.search,
        headers: req.headers,
        body: await req.text(),
        info: idempotencyInfo(req),
      });
      return replyToResponse(reply);
    }, options);
    return {
      async send(method, path, init = {}) {
        const headers = new Headers();
        for (const [n, v] of init.headers ?? []) headers.append(n, v);
        const body = init.body === undefined ? undefined : init.stream ? bodyStream(init.body) : init.body;
        const request = new Request(`http://test.local${path}`, {
          method,
          headers,
          body,
          duplex: 'half',
        } as RequestInit);
        let response: Response;
        try {
          response = await endpoint(request);
        } catch (error) {
          // what the platform does with a thrown error
          response = Response.json({ error: (error as Error).message }, { status: 500 });
        }
        return fromFetchResponse(response);
      },
      close: async () => {},
    };
  },
};

testHttpAdapter(webHarness);

/**
 * A Stripe-like test upstream for the client matrix: `POST /v1/customers` creates
 * `{ id: 'cus_…', object: 'customer' }` from a form or JSON body, and a minimal
 * OpenAI-compatible `POST /v1/chat/completions`. It counts every request it receives and
 * every execution (a created customer or a completion) per idempotency key, and misbehaves
 * on demand: the first request of a scenario can be slow, answer 500 / 503 / 429, or reset
 * the connection after the request was received (the customer is created all the same).
 *
 * The same logic serves the middleware rows: {@link CustomerService.answer} is what an
 * Express handler behind `idempotency()` calls.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the first request of a scenario does; later requests answer normally. */
export type Behaviour = 'ok' | 'slow' | '500' | '503' | '429' | 'reset';

export interface Scenario {
  /** The first request's behaviour. Default `'ok'`. */
  first?: Behaviour;
  /** How long a normal answer takes. Default 50 ms. */
  delayMs?: number;
  /** How long `'slow'` (and every chat completion) takes. Default 1500 ms. */
  slowMs?: number;
}

/** A response to write. */
export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A reply, or a reset after the work was done (`reply` is what the work produced). */
export type Answer = Reply | { reset: true; reply: Reply };

export interface CustomerService {
  /** `http://127.0.0.1:port`, once listening. */
  readonly url: string;
  /** Requests received, executions or not. */
  received: number;
  /** Customers created and completions produced. */
  executions: number;
  /** Executions per `Idempotency-Key` received (`''` for none). */
  readonly executionsByKey: Map<string, number>;
  /** Bodies received, in order. */
  readonly bodies: string[];
  /** Resets the counters and sets the next scenario. */
  scenario(s?: Scenario): void;
  /** The logic behind both routes, for an in-process handler. */
  answer(path: string, body: string, contentType: string, key: string): Promise<Answer>;
  close(): Promise<void>;
}

const json = (status: number, value: unknown, headers: Record<string, string> = {}): Reply => ({
  status,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(value),
});

const stripeError = (status: number, type: string, message: string, headers?: Record<string, string>) =>
  json(status, { error: { type, message } }, headers);

function parseParams(body: string, contentType: string): Record<string, unknown> {
  if (contentType.includes('json')) return body ? (JSON.parse(body) as Record<string, unknown>) : {};
  return Object.fromEntries(new URLSearchParams(body));
}

/**
 * Starts the upstream on a free port.
 *
 * @example
 * const upstream = await startCustomerService();
 * upstream.scenario({ first: '500' });
 */
export async function startCustomerService(): Promise<CustomerService> {
  let current: Required<Scenario> = { first: 'ok', delayMs: 50, slowMs: 1500 };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const service: CustomerService = {
    url: '',
    received: 0,
    executions: 0,
    executionsByKey: new Map(),
    bodies: [],
    scenario(s = {}) {
      current = { first: 'ok', delayMs: 50, slowMs: 1500, ...s };
      service.received = 0;
      service.executions = 0;
      service.executionsByKey.clear();
      service.bodies.length = 0;
    },
    async answer(path, body, contentType, key) {
      const behaviour = service.received === 0 ? current.first : 'ok';
      service.received += 1;
      service.bodies.push(body);
      const execute = () => {
        service.executions += 1;
        service.executionsByKey.set(key, (service.executionsByKey.get(key) ?? 0) + 1);
      };
      if (path === '/v1/chat/completions') {
        await sleep(current.slowMs);
        execute();
        const { model } = parseParams(body, contentType);
        return json(200, {
          id: `chatcmpl-${randomBytes(6).toString('hex')}`,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'once' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
        });
      }
      if (path !== '/v1/customers') return stripeError(404, 'invalid_request_error', `no route ${path}`);
      if (behaviour === '503')
        return stripeError(503, 'api_error', 'temporarily unavailable; nothing was done');
      if (behaviour === '429') {
        return stripeError(429, 'rate_limit_error', 'too many requests; nothing was done', {
          'retry-after': '1',
        });
      }
      await sleep(behaviour === 'slow' ? current.slowMs : current.delayMs);
      let params: Record<string, unknown>;
      try {
        params = parseParams(body, contentType);
      } catch {
        return stripeError(400, 'invalid_request_error', 'the body is not valid JSON');
      }
      execute();
      const customer = { id: `cus_${randomBytes(7).toString('hex')}`, object: 'customer', ...params };
      if (behaviour === 'reset') return { reset: true, reply: json(200, customer) };
      if (behaviour === '500') return stripeError(500, 'api_error', 'the customer may have been created');
      return json(200, customer);
    },
    async close() {
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    },
  };

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const key = String(req.headers['idempotency-key'] ?? '');
    const url = new URL(req.url ?? '/', 'http://x');
    const answer = await service.answer(
      url.pathname,
      Buffer.concat(chunks).toString(),
      String(req.headers['content-type'] ?? ''),
      key,
    );
    if ('reset' in answer) {
      req.socket.resetAndDestroy();
      return;
    }
    res.writeHead(answer.status, answer.headers).end(answer.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  Object.assign(service, { url: `http://127.0.0.1:${port}` });
  return service;
}

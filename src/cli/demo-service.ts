/**
 * The demo upstream behind `idem demo`: a tiny service with no idempotency of its own, that
 * counts how often each endpoint really executed.
 *
 * | endpoint | does |
 * |---|---|
 * | `POST /payments` | creates a payment (new id every execution), 201 + `Location`, after `delayMs` |
 * | `GET /payments/:id` | reads one back |
 * | `POST /v1/chat/completions` | an OpenAI-shaped completion; with `"stream": true`, SSE events with `id:` and `data:` lines every `tokenDelayMs`, then a usage event and `data: [DONE]` |
 * | `GET /stats` | `{ "executions": { "payments": n, "completions": n } }` |
 *
 * `?status=503` (any status) answers that status instead, after counting the execution;
 * `?delay=ms` overrides the delay of one request.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Options of {@link createDemoService}. */
export interface DemoServiceOptions {
  /** Time a payment takes, and before a completion's first token. Default 250 ms. */
  delayMs?: number;
  /** Time between two streamed tokens. Default 40 ms. */
  tokenDelayMs?: number;
}

/** A running demo service. */
export interface DemoService {
  readonly server: http.Server;
  /** How often each endpoint executed. */
  readonly executions: { payments: number; completions: number };
  listen(port?: number, host?: string): Promise<string>;
  close(): Promise<void>;
}

const REPLY = 'Idempotency means a retry gets the first answer instead of a second charge.'.split(/(?<= )/);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Creates the demo service.
 *
 * @example
 * const demo = createDemoService({ delayMs: 500 });
 * const url = await demo.listen(4000);
 */
export function createDemoService(options: DemoServiceOptions = {}): DemoService {
  const delayMs = options.delayMs ?? 250;
  const tokenDelayMs = options.tokenDelayMs ?? 40;
  const executions = { payments: 0, completions: 0 };
  const payments = new Map<string, object>();

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://demo');
    const body = await readJson(req);
    const delay = url.searchParams.has('delay') ? Number(url.searchParams.get('delay')) : undefined;
    const forced = Number(url.searchParams.get('status') ?? 0);
    const send = (status: number, value: unknown, headers: http.OutgoingHttpHeaders = {}) => {
      const text = JSON.stringify(value);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        ...headers,
      });
      res.end(text);
    };
    if (body === INVALID) return send(400, { error: 'the body is not JSON' });
    const b = (body ?? {}) as Record<string, unknown>;

    if (req.method === 'POST' && url.pathname === '/payments') {
      const n = ++executions.payments;
      await sleep(delay ?? delayMs);
      if (forced) return send(forced, { error: `forced ${forced}`, execution: n });
      const id = `pay_${n}_${randomBytes(4).toString('hex')}`;
      const payment = {
        id,
        amount: b.amount ?? null,
        currency: b.currency ?? null,
        status: 'created',
        execution: n,
      };
      payments.set(id, payment);
      return send(201, payment, {
        location: `/payments/${id}`,
        'x-request-id': `req_${randomBytes(6).toString('hex')}`,
      });
    }
    if (req.method === 'GET' && url.pathname.startsWith('/payments/')) {
      const payment = payments.get(url.pathname.slice('/payments/'.length));
      return payment ? send(200, payment) : send(404, { error: 'no such payment' });
    }
    if (req.method === 'POST' && url.pathname === '/v1/chat/completions') {
      const n = ++executions.completions;
      await sleep(delay ?? delayMs);
      if (forced) return send(forced, { error: { message: `forced ${forced}` }, execution: n });
      const id = `chatcmpl-${n}-${randomBytes(6).toString('hex')}`;
      const model = typeof b.model === 'string' ? b.model : 'demo-1';
      const created = Math.floor(Date.now() / 1000);
      const usage = { prompt_tokens: 12, completion_tokens: REPLY.length, total_tokens: 12 + REPLY.length };
      if (b.stream !== true) {
        const message = { role: 'assistant', content: REPLY.join('') };
        return send(200, {
          id,
          object: 'chat.completion',
          created,
          model,
          choices: [{ index: 0, message, finish_reason: 'stop' }],
          usage,
        });
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const chunk = (i: number, delta: object, finish: string | null, extra: object = {}) =>
        `id: ${i}\ndata: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;
      res.write(chunk(0, { role: 'assistant', content: '' }, null));
      for (let i = 0; i < REPLY.length; i++) {
        await sleep(tokenDelayMs);
        res.write(chunk(i + 1, { content: REPLY[i] }, null));
      }
      res.write(chunk(REPLY.length + 1, {}, 'stop'));
      const usageEvent = { id, object: 'chat.completion.chunk', created, model, choices: [], usage };
      res.write(`id: ${REPLY.length + 2}\ndata: ${JSON.stringify(usageEvent)}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    if (req.method === 'GET' && url.pathname === '/stats') return send(200, { executions });
    send(404, { error: `no route ${req.method} ${url.pathname}` });
  });

  return {
    server,
    executions,
    listen(port = 4000, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve(`http://${host}:${(server.address() as AddressInfo).port}`);
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

const INVALID = Symbol('invalid');

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  if (chunks.length === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return INVALID;
  }
}

/**
 * Helpers of the gateway tests: real sockets only. A gateway in process (or a child
 * process), the demo service or a hand-written upstream, and an HTTP client that keeps raw
 * bytes so byte-identity can be asserted.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDemoService, type DemoService } from '../../src/cli/demo-service.ts';
import type { GatewayConfig } from '../../src/gateway/config.ts';
import { createGateway, type Gateway } from '../../src/gateway/index.ts';

export interface Stack {
  gateway: Gateway;
  url: string;
  demo: DemoService;
  upstreamUrl: string;
  close(): Promise<void>;
}

/** The demo service (fast by default) with a gateway in front of it on a memory store. */
export async function startStack(
  config: Partial<GatewayConfig> = {},
  demoOptions: { delayMs?: number; tokenDelayMs?: number } = { delayMs: 20, tokenDelayMs: 5 },
): Promise<Stack> {
  const demo = createDemoService(demoOptions);
  const upstreamUrl = await demo.listen(0);
  const gateway = await createGateway({
    store: 'memory',
    purgeEvery: false,
    ...config,
    upstream: upstreamUrl,
  });
  const url = await gateway.listen(0);
  return {
    gateway,
    url,
    demo,
    upstreamUrl,
    async close() {
      await gateway.close();
      await demo.close();
    },
  };
}

/** A hand-written upstream on a free port. */
export async function startUpstream(
  handler: http.RequestListener,
): Promise<{ url: string; port: number; server: http.Server; close(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

/** One request over a fresh connection; resolves with the raw body. */
export function request(
  url: string,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(options.path ?? '/', url);
    const req = http.request(
      u,
      { method: options.method ?? 'POST', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A JSON POST with a key. */
export function post(
  url: string,
  path: string,
  body: unknown,
  key?: string,
  headers: Record<string, string> = {},
) {
  return request(url, {
    path,
    headers: {
      'content-type': 'application/json',
      ...(key !== undefined && { 'idempotency-key': key }),
      ...headers,
    },
    body: JSON.stringify(body),
  });
}

/**
 * Starts a streaming request and reports each chunk with its arrival time; `abortAfter`
 * destroys the connection after that many chunks.
 */
export function stream(
  url: string,
  path: string,
  body: unknown,
  key: string,
  abortAfter?: number,
): {
  firstChunk: Promise<number>;
  done: Promise<{
    status: number;
    headers: http.IncomingHttpHeaders;
    body: Buffer;
    endedAt: number;
    aborted: boolean;
  }>;
} {
  let onFirst!: (t: number) => void;
  const firstChunk = new Promise<number>((r) => (onFirst = r));
  const done = new Promise<{
    status: number;
    headers: http.IncomingHttpHeaders;
    body: Buffer;
    endedAt: number;
    aborted: boolean;
  }>((resolve, reject) => {
    const req = http.request(new URL(path, url), {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        if (chunks.length === 0) onFirst(Date.now());
        chunks.push(c);
        if (abortAfter !== undefined && chunks.length >= abortAfter) {
          req.destroy();
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            endedAt: Date.now(),
            aborted: true,
          });
        }
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          endedAt: Date.now(),
          aborted: false,
        }),
      );
      res.on('error', () => {});
    });
    req.on('error', (e) => (abortAfter === undefined ? reject(e) : undefined));
    req.end(JSON.stringify(body));
  });
  return { firstChunk, done };
}

/** Polls `check` every 10 ms until true or `ms` pass. */
export async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return check();
}

/** A port nothing listens on (bound, then released). */
export async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

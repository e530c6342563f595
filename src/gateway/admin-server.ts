/**
 * The gateway's admin listener (`idem serve --admin-port N --admin-token T`): the live
 * dashboard at `/`, `/metrics`, `/savings` and a small JSON API, all behind
 * `Authorization: Bearer <token>`. Every request without the token is answered 401.
 *
 * A browser cannot send a Bearer header when it navigates, so `GET /` without the token answers
 * 401 with a small form page (for `Accept: text/html`; it holds no data). The form keeps the
 * token in `sessionStorage` and fetches the dashboard, and every later data request, with
 * `fetch(…, { headers: { authorization: 'Bearer …' } })`.
 *
 * | path | answer |
 * |---|---|
 * | `GET /` | the dashboard (HTML) |
 * | `GET /metrics` | Prometheus text |
 * | `GET /savings` | the savings report (JSON) |
 * | `GET /api/metrics` | the metrics as prom-client's `getMetricsAsJSON()` |
 * | `GET /api/keys?limit=N` | `{ keys: KeyLifecycle[] }`, newest first (N from 1 to 500, default 50) |
 * | `POST /api/keys/find` `{"key": "raw key"}` | `{ keys: KeyLifecycle[] }` (the raw key is hashed, never kept) |
 *
 * @module
 */
import http from 'node:http';
import { InvalidKeyError } from '../core/errors.ts';
import { type ProblemType, problemBody } from '../http/problem.ts';
import { bearerCheck } from './admin.ts';
import type { AdminSource } from './admin-source.ts';
import { dashboardPage, tokenPage } from './dashboard/pages.ts';

/** Options of {@link createAdminServer}. */
export interface AdminServerOptions {
  /** The bearer token every request must carry (at least 16 characters). */
  token: string;
}

const MAX_FIND_BYTES = 8 * 1024;
const MAX_KEYS = 500;
const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};
const PAGE_POLICY =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; " +
  "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * The admin listener's request handler.
 *
 * @example
 * http.createServer(adminHandler(gateway.admin, { token: process.env.IDEM_ADMIN_TOKEN! })).listen(9090);
 */
export function adminHandler(source: AdminSource, options: AdminServerOptions): http.RequestListener {
  const carriesToken = bearerCheck(options.token);
  return (req, res) => {
    void answer(req, res).catch((error: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (error instanceof InvalidKeyError) return sendProblem(res, 'invalid-key', error.message);
      sendProblem(res, 'internal-error', 'the admin listener failed on this request; see the gateway log');
    });
  };

  async function answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const path = url.pathname;
    if (!carriesToken(req)) {
      req.resume();
      const wantsPage = path === '/' && req.method === 'GET' && /text\/html/.test(req.headers.accept ?? '');
      if (wantsPage) return sendPage(res, 401, tokenPage());
      return sendProblem(res, 'admin-token-required', 'send Authorization: Bearer <admin token>');
    }
    const route = `${req.method} ${path}`;
    switch (route) {
      case 'GET /':
        return sendPage(res, 200, dashboardPage());
      case 'GET /metrics': {
        const { contentType, text } = await source.metricsText();
        res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': contentType });
        return void res.end(text);
      }
      case 'GET /savings':
        return sendJson(res, await source.savings());
      case 'GET /api/metrics':
        return sendJson(res, await source.metricsJson());
      case 'GET /api/keys': {
        const limit = limitOf(url.searchParams.get('limit'));
        if (limit === undefined)
          return sendAboutBlank(
            res,
            400,
            'Bad Request',
            `limit must be a whole number from 1 to ${MAX_KEYS}`,
          );
        return sendJson(res, { keys: await source.recentKeys(limit) });
      }
      case 'POST /api/keys/find': {
        const body = await readSmallBody(req, MAX_FIND_BYTES);
        if (body === undefined)
          return sendProblem(res, 'payload-too-large', `send at most ${MAX_FIND_BYTES} bytes`);
        const key = keyOf(body);
        if (key === undefined)
          return sendProblem(res, 'invalid-body', 'send a JSON object {"key": "<the raw key>"}');
        return sendJson(res, { keys: await source.findKey(key) });
      }
    }
    req.resume();
    const known = ['/', '/metrics', '/savings', '/api/metrics', '/api/keys', '/api/keys/find'];
    if (known.includes(path))
      return sendAboutBlank(res, 405, 'Method Not Allowed', `${req.method} is not served at ${path}`);
    sendAboutBlank(res, 404, 'Not Found', `nothing at ${path}; the dashboard is at /`);
  }
}

/**
 * The admin listener as an `http.Server` (not listening yet).
 *
 * @example
 * const server = createAdminServer(gateway.admin, { token: process.env.IDEM_ADMIN_TOKEN! });
 * server.listen(9090, '127.0.0.1');
 */
export function createAdminServer(source: AdminSource, options: AdminServerOptions): http.Server {
  return http.createServer({ keepAliveTimeout: 65_000 }, adminHandler(source, options));
}

// --- Internal helpers ---

function sendPage(res: http.ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': PAGE_POLICY,
    ...(status === 401 && { 'www-authenticate': 'Bearer realm="idem-admin"' }),
  });
  res.end(html);
}

function sendJson(res: http.ServerResponse, value: unknown): void {
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

function sendProblem(res: http.ServerResponse, type: ProblemType, detail: string): void {
  const body = problemBody(type, detail);
  res.writeHead(body.status, {
    ...SECURITY_HEADERS,
    'content-type': 'application/problem+json',
    ...(body.status === 401 && { 'www-authenticate': 'Bearer realm="idem-admin"' }),
  });
  res.end(JSON.stringify(body));
}

function sendAboutBlank(res: http.ServerResponse, status: number, title: string, detail: string): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/problem+json' });
  res.end(JSON.stringify({ type: 'about:blank', title, status, detail }));
}

function limitOf(value: string | null): number | undefined {
  if (value === null) return 50;
  const n = Number(value);
  return /^\d+$/.test(value) && n >= 1 && n <= MAX_KEYS ? n : undefined;
}

function keyOf(body: Buffer): string | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    const key = (parsed as { key?: unknown } | null)?.key;
    return typeof key === 'string' ? key : undefined;
  } catch {
    return undefined;
  }
}

/** The body, or undefined once it passes `limit` bytes (the rest is drained, not kept). */
function readSmallBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () => resolve(size <= limit ? Buffer.concat(chunks) : undefined));
    req.on('error', reject);
  });
}

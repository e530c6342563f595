/**
 * The measurement behind the gateway's choice of proxy library (docs/gateway.md): a bare
 * reverse proxy built five ways in front of one upstream, each loaded with autocannon over
 * loopback. Not a test: run it by hand with
 * `npx node --conditions=idem-source bench/tools/proxy-bench.ts [seconds] [connections]`.
 *
 * The gateway itself (pass-through, new keys and replays on SQLite, Postgres and Redis, against
 * the upstream alone) is measured by `npm run bench -- --only gateway` (bench/sections/gateway.ts).
 *
 * Every proxy runs in its own child process and the upstream in another, so the numbers are
 * not skewed by sharing one event loop with the load generator.
 */
import { type ChildProcess, fork } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import autocannon from 'autocannon';

const KINDS = ['node-http', 'undici-request', 'undici-stream', 'undici-dispatch', 'http-proxy-3'] as const;
type Kind = (typeof KINDS)[number];
const role = process.argv[2];
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) c.kill();
});

if (role === 'upstream') {
  const body = Buffer.from(JSON.stringify({ id: 'pay_123', status: 'created', amount: 1240.55 }));
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(201, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => process.send?.((server.address() as AddressInfo).port));
} else if (role === 'proxy') {
  const kind = process.argv[3] as Kind;
  const target = `http://127.0.0.1:${process.argv[4]}`;
  const handler = await proxyHandler(kind, target);
  const server = http.createServer(handler);
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => process.send?.((server.address() as AddressInfo).port));
} else {
  const seconds = Number(process.argv[2] ?? 5);
  const connections = Number(process.argv[3] ?? 50);
  const upstream = await start(['upstream']);
  const rows: string[] = [];
  for (const kind of ['direct', ...KINDS] as const) {
    const proxy = kind === 'direct' ? undefined : await start(['proxy', kind, String(upstream.port)]);
    const port = proxy?.port ?? upstream.port;
    await load(port, 1, connections); // warm up
    const r = await load(port, seconds, connections);
    rows.push(
      `| ${kind} | ${Math.round(r.requests.average)} | ${r.latency.p50} | ${r.latency.p99} | ${r.errors + r.non2xx} |`,
    );
    proxy?.child.kill();
  }
  upstream.child.kill();
  console.log(`\n${seconds}s per run, ${connections} connections, POST 60-byte JSON, 201 + 70-byte JSON`);
  console.log('| proxy | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|');
  console.log(rows.join('\n'));
}

async function proxyHandler(kind: Kind, target: string): Promise<http.RequestListener> {
  const hop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host']);
  const forwardHeaders = (h: http.IncomingHttpHeaders) => {
    const out: Record<string, string | string[]> = {};
    for (const k in h) if (!hop.has(k)) out[k] = h[k] as string | string[];
    return out;
  };
  if (kind === 'node-http') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    const u = new URL(target);
    return (req, res) => {
      const up = http.request(
        {
          host: u.hostname,
          port: u.port,
          method: req.method,
          path: req.url,
          headers: forwardHeaders(req.headers),
          agent,
        },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
  }
  const undici = await import('undici');
  const pool = new undici.Pool(target, { connections: 256 });
  if (kind === 'undici-request') {
    return async (req, res) => {
      try {
        const r = await pool.request({
          method: req.method as 'POST',
          path: req.url!,
          headers: forwardHeaders(req.headers),
          body: req,
        });
        res.writeHead(r.statusCode, r.headers as http.OutgoingHttpHeaders);
        for await (const chunk of r.body) res.write(chunk);
        res.end();
      } catch {
        res.destroy();
      }
    };
  }
  if (kind === 'undici-stream') {
    return (req, res) => {
      pool
        .stream(
          { method: req.method as 'POST', path: req.url!, headers: forwardHeaders(req.headers), body: req },
          ({ statusCode, headers }) => {
            res.writeHead(statusCode, headers as http.OutgoingHttpHeaders);
            return res;
          },
        )
        .catch(() => res.destroy());
    };
  }
  if (kind === 'undici-dispatch') {
    return (req, res) => {
      pool.dispatch(
        { method: req.method as 'POST', path: req.url!, headers: forwardHeaders(req.headers), body: req },
        {
          onRequestStart() {},
          onResponseStart(_c, status, headers) {
            res.writeHead(status, headers as http.OutgoingHttpHeaders);
          },
          onResponseData(_c, chunk) {
            res.write(chunk);
          },
          onResponseEnd() {
            res.end();
          },
          onResponseError() {
            res.destroy();
          },
        },
      );
    };
  }
  const { createProxyServer } = await import('http-proxy-3');
  const proxy = createProxyServer({
    target,
    agent: new http.Agent({ keepAlive: true, maxSockets: 256 }),
  });
  proxy.on('error', (_e, _req, res) => (res as http.ServerResponse).destroy?.());
  return (req, res) => proxy.web(req, res);
}

function start(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(new URL(import.meta.url).pathname, args, { execArgv: ['--conditions=idem-source'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('message', (port) => resolve({ child, port: port as number }));
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

function load(port: number, duration: number, connections: number): Promise<autocannon.Result> {
  return autocannon({
    url: `http://127.0.0.1:${port}/payments`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ claimId: 'CLAIM-12345', amount: 1240.55, currency: 'EUR' }),
    connections,
    duration,
  });
}

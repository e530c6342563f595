/**
 * The gateway's JSON logs: a pino logger given to createGateway, and `idem serve --log-level`
 * as users run it. One line per request with the route, method, result, status, duration, the
 * hashed record id and the W3C traceparent (the client's when valid, else a new one that is also
 * forwarded upstream); start-up, shutdown and store-error lines; never the raw key, a credential
 * or a body.
 */
import { spawn } from 'node:child_process';
import type { IncomingHttpHeaders } from 'node:http';
import { memoryStore, type Store } from 'idem';
import { createGateway, traceparentOf } from 'idem/gateway';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { startUpstream } from './helpers.ts';

const RAW_KEY = 'raw-key-3b9d-must-never-be-logged';
const CREDENTIAL = 'sk-live-credential-9e1f-never-logged';
const BODY_MARK = 'body-secret-77c2';
const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const CLI = new URL('../../src/cli/index.ts', import.meta.url).pathname;
const FORMAT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/;

type Line = Record<string, unknown>;

async function recordingUpstream() {
  const seen: IncomingHttpHeaders[] = [];
  const upstream = await startUpstream((req, res) => {
    seen.push(req.headers);
    req.resume();
    req.on('end', () => {
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(`{"ok":true,"echo":"${BODY_MARK}"}`);
    });
  });
  return { ...upstream, seen };
}

const post = (url: string, headers: Record<string, string>) =>
  fetch(`${url}/payments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CREDENTIAL}`, ...headers },
    body: `{"note":"${BODY_MARK}"}`,
    signal: AbortSignal.timeout(10_000),
  });

function expectClean(text: string): void {
  for (const secret of [RAW_KEY, CREDENTIAL, BODY_MARK]) expect(text).not.toContain(secret);
}

it('traceparentOf keeps valid W3C values and replaces the rest', () => {
  expect(traceparentOf(VALID)).toEqual({ traceparent: VALID, received: true });
  expect(traceparentOf(`01-${VALID.slice(3)}-future`).received).toBe(true);
  for (const bad of [
    undefined,
    '',
    'garbage',
    VALID.toUpperCase(),
    `ff-${VALID.slice(3)}`,
    `${VALID}-extra`,
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    [VALID, VALID],
  ]) {
    const t = traceparentOf(bad);
    expect(t.received, String(bad)).toBe(false);
    expect(t.traceparent).toMatch(FORMAT);
  }
});

it('a pino logger gets JSON request, start-up, shutdown and store-error lines with traceparent, and nothing secret', async () => {
  const lines: Line[] = [];
  const raw: string[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(s: string) {
        raw.push(s);
        lines.push(JSON.parse(s));
      },
    },
  );
  const upstream = await recordingUpstream();
  const state = { down: false };
  const store: Store = new Proxy(memoryStore(), {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (prop !== 'complete' || typeof value !== 'function') return value;
      return (...args: unknown[]) =>
        state.down ? Promise.reject(new Error('store down')) : value.apply(target, args);
    },
  });
  const gateway = await createGateway({
    upstream: upstream.url,
    store,
    purgeEvery: false,
    routes: [{ path: '/payments', key: 'optional' }],
    logger,
  });
  const url = await gateway.listen(0);
  try {
    expect((await post(url, { 'idempotency-key': RAW_KEY, traceparent: VALID })).status).toBe(201);
    expect((await post(url, { 'idempotency-key': RAW_KEY })).status).toBe(201); // a replay
    expect(
      (await post(url, { 'idempotency-key': 'other-key', traceparent: 'not-a-traceparent' })).status,
    ).toBe(201);
    state.down = true;
    await post(url, { 'idempotency-key': 'k-store-down' })
      .then((r) => r.arrayBuffer())
      .catch(() => undefined);
  } finally {
    await gateway.close();
    await upstream.close();
  }
  const text = raw.join('');
  expectClean(text);
  expect(lines[0]!.msg).toBe('gateway listening');
  expect(lines.at(-1)!.msg).toBe('gateway closed');
  const requests = lines.filter((l) => l.msg === 'request');
  const storeErrors = lines.filter((l) => l.msg === 'store error');
  expect(requests).toHaveLength(4);
  expect(storeErrors.length).toBeGreaterThanOrEqual(1); // the engine retries a failed complete
  expect(lines[0]).toMatchObject({ url, routes: 1, store: 'memory' });
  const [first, replay, invalid, failed] = requests as [Line, Line, Line, Line];
  const storeError = storeErrors[0]!;
  expect(first).toMatchObject({
    route: '/payments',
    method: 'POST',
    result: 'executed',
    status: 201,
    traceparent: VALID,
    level: 30,
  });
  expect(first.durationMs).toBeTypeOf('number');
  expect(first.recordId).toMatch(/^[A-Za-z0-9_-]{43}$/); // the hashed key + scope
  expect(replay).toMatchObject({ result: 'replayed', status: 201, recordId: first.recordId });
  // no traceparent: a new one, forwarded upstream so the service's logs join the gateway's line
  expect(replay.traceparent).toMatch(FORMAT);
  expect(replay.traceparent).not.toBe(VALID);
  // an invalid one: a new one on the line; the client's header is forwarded as it was sent
  expect(invalid.traceparent).toMatch(FORMAT);
  expect(upstream.seen.map((h) => h.traceparent)).toEqual([
    VALID,
    'not-a-traceparent',
    expect.stringMatching(FORMAT),
  ]);
  expect(storeError).toMatchObject({
    event: 'store_error',
    errorType: 'Error',
    error: 'store down',
    route: '/payments',
    level: 50,
  });
  expect(storeError.traceparent).toBe(failed.traceparent);
  expect(upstream.seen[2]!.traceparent).toBe(failed.traceparent);
  expect(failed).toMatchObject({ result: 'error', route: '/payments' });
});

it('idem serve --log-level info writes JSON lines on stdout; IDEM_LOG_LEVEL=warn silences requests; a bad level is refused', async () => {
  const upstream = await recordingUpstream();
  const serve = async (args: string[], env: Record<string, string> = {}) => {
    const child = spawn(
      process.execPath,
      [
        '--conditions=idem-source',
        CLI,
        'serve',
        '--upstream',
        upstream.url,
        '--store',
        'memory',
        '--port',
        '0',
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, IDEM_LOG_LEVEL: '', ...env } },
    );
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        const m = /idem gateway (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    });
    await (await post(url, { 'idempotency-key': RAW_KEY, traceparent: VALID })).text();
    // the request line is written when the response closes: wait for it (a loaded machine is slow)
    const quiet = args.length === 0;
    for (let i = 0; i < 50 && !quiet && !out.includes('"msg":"request"'); i++)
      await new Promise((r) => setTimeout(r, 100));
    if (quiet) await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    return out.split('\n').filter((l) => l.startsWith('{'));
  };
  try {
    const info = await serve(['--log-level', 'info']);
    expectClean(info.join('\n'));
    const parsed = info.map((l) => JSON.parse(l) as Line);
    expect(parsed.map((l) => l.msg)).toEqual([
      'gateway listening',
      'request',
      'gateway closing',
      'gateway closed',
    ]);
    expect(parsed[1]).toMatchObject({ name: 'idem-gateway', result: 'executed', traceparent: VALID });
    expect(await serve([], { IDEM_LOG_LEVEL: 'warn' })).toEqual([]);
    const bad = spawn(
      process.execPath,
      [
        '--conditions=idem-source',
        CLI,
        'serve',
        '--upstream',
        upstream.url,
        '--store',
        'memory',
        '--log-level',
        'loud',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    bad.stderr.on('data', (d) => (err += d));
    const code = await new Promise((r) => bad.once('exit', r));
    expect(code).not.toBe(0);
    expect(err).toMatch(/logLevel must be one of fatal, error, warn, info, debug, trace, silent, got "loud"/);
  } finally {
    await upstream.close();
  }
});

it('the gateway logger writes every line, in order, before a process that flushes it exits', async () => {
  // a line still being written when the process exits was lost, and the buffered line after it
  // printed first (pino's default stream calls flush's callback at once)
  const log = new URL('../../src/gateway/log.ts', import.meta.url).pathname;
  const script = `
    import { jsonLogger } from ${JSON.stringify(log)};
    const logger = jsonLogger('info');
    logger.info({ big: 'y'.repeat(200000) }, 'gateway closing');
    logger.info({}, 'gateway closed');
    logger.flush(() => process.exit(0));`;
  for (let run = 0; run < 3; run++) {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    // read slowly, as a busy log shipper would: the pipe fills and the big write waits
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), 100);
    expect(await new Promise((r) => child.once('close', r))).toBe(0);
    const msgs = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(msgs).toEqual(['gateway closing', 'gateway closed']);
  }
});

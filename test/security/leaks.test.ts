/**
 * What must never leave idem: `Set-Cookie` and credential headers in a replay, raw keys,
 * credentials and bodies in logs, and raw keys or credentials in the store. Real sockets, a
 * gateway and the Express middleware on SQLite files that are read back byte by byte; the logs
 * are collected through each layer's `logger`, over a run that makes them speak (a keyed request
 * without credentials, a failing store, an upstream that dies mid-request).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import express from 'express';
import { createIdem, type Store } from 'idem';
import { idempotency, idempotencyErrors } from 'idem/express';
import { createGateway } from 'idem/gateway';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, describe, expect, it, vi } from 'vitest';

const RAW_KEY = 'raw-key-7c1e-must-never-leak';
const CREDENTIAL = 'sk-live-credential-55aa-never-logged';
const BODY_MARK = 'body-secret-0f0f';
const dir = mkdtempSync(join(tmpdir(), 'idem-leaks-'));
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  rmSync(dir, { recursive: true, force: true });
});

function logSink() {
  const lines: string[] = [];
  // pino-style structured lines (the gateway's request lines) count as their JSON
  const text = (a: unknown) =>
    a instanceof Error ? a.stack : typeof a === 'object' && a !== null ? JSON.stringify(a) : String(a);
  const put = (...args: unknown[]) => void lines.push(args.map(text).join(' '));
  return { lines, logger: { warn: put, error: put, info: put } };
}

/** An upstream that sets a cookie and credential-looking headers, or dies on `x-die`. */
async function upstream() {
  const server = http.createServer((req, res) => {
    if (req.headers['x-die']) {
      req.socket.destroy();
      return;
    }
    req.resume();
    res.writeHead(201, {
      'content-type': 'application/json',
      'set-cookie': 'session=abc; HttpOnly',
      authorization: 'Bearer upstream-echo',
      'www-authenticate': 'Bearer realm="x"',
      'x-request-id': 'r-1',
    });
    res.end(`{"ok":true,"note":"${BODY_MARK}"}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => server.close(r)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function post(url: string, headers: Record<string, string>, body = `{"note":"${BODY_MARK}"}`) {
  return fetch(`${url}/payments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
    signal: AbortSignal.timeout(10_000),
  });
}

/** A store that fails every call while `down` is set. */
function breakable(store: Store) {
  const state = { down: false };
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || prop === 'close') return value;
      return (...args: unknown[]) =>
        state.down ? Promise.reject(new Error('store down')) : value.apply(target, args);
    },
  });
  return { store: wrapped, state };
}

function filesText(path: string) {
  return readdirSync(path)
    .map((f) => readFileSync(join(path, f)).toString('latin1'))
    .join('\n');
}

describe('nothing leaks', () => {
  it('gateway and middleware: no Set-Cookie or credentials replayed; no raw key, credential or body in logs; no raw key or credential in the store', async () => {
    // anything written to the console directly counts as a log too
    const consoleLines: string[] = [];
    const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((m) =>
      vi
        .spyOn(console, m)
        .mockImplementation((...args: unknown[]) => void consoleLines.push(args.map(String).join(' '))),
    );
    closers.push(async () => {
      for (const spy of spies) spy.mockRestore();
    });
    const upstreamUrl = await upstream();
    const gatewayLog = logSink();
    const gwDir = join(dir, 'gateway');
    const gwStore = breakable(sqliteStore({ path: join(gwDir, 'idem.db') }));
    const gateway = await createGateway({
      store: gwStore.store,
      purgeEvery: false,
      upstream: upstreamUrl,
      logger: gatewayLog.logger,
    });
    closers.push(() => gateway.close());
    const gatewayUrl = await gateway.listen(0);

    const mwLog = logSink();
    const mwDir = join(dir, 'middleware');
    const mwStore = breakable(sqliteStore({ path: join(mwDir, 'idem.db') }));
    const app = express();
    app.use(idempotency({ idem: createIdem({ store: mwStore.store }), logger: mwLog.logger }));
    app.post('/payments', (_req, res) => {
      res
        .status(201)
        .set('set-cookie', 'session=abc; HttpOnly')
        .set('authorization', 'Bearer upstream-echo')
        .json({ ok: true, note: BODY_MARK });
    });
    app.use(idempotencyErrors());
    const server = http.createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => server.close(r)));
    const mwUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    for (const [layer, url, state] of [
      ['gateway', gatewayUrl, gwStore.state],
      ['middleware', mwUrl, mwStore.state],
    ] as const) {
      const auth = { 'idempotency-key': RAW_KEY, authorization: `Bearer ${CREDENTIAL}` };
      const first = await post(url, auth);
      const replay = await post(url, auth);
      expect([first.status, replay.status], layer).toEqual([201, 201]);
      expect(replay.headers.get('idempotent-replayed'), layer).toBe('true');
      for (const header of ['set-cookie', 'authorization', 'www-authenticate']) {
        expect(replay.headers.get(header), `${layer} replayed ${header}`).toBeNull();
      }
      await first.text();
      await replay.text();
      // make the logs speak: no credentials (the anonymous-scope warning), a store outage,
      // a 422, and (gateway) an upstream that dies after the request was sent
      await (await post(url, { 'idempotency-key': `${RAW_KEY}-anon` })).text();
      await (await post(url, auth, `{"other":"${BODY_MARK}"}`)).text();
      state.down = true;
      await (await post(url, { ...auth, 'idempotency-key': `${RAW_KEY}-down` })).text();
      state.down = false;
      if (layer === 'gateway')
        await (await post(url, { ...auth, 'idempotency-key': `${RAW_KEY}-die`, 'x-die': '1' })).text();
    }

    const logs = [...gatewayLog.lines, ...mwLog.lines, ...consoleLines].join('\n');
    expect(logs.length, 'the run made the layers log something').toBeGreaterThan(0);
    // the gateway's request lines are in: one per request, each with its traceparent
    expect(gatewayLog.lines.filter((l) => l.includes('"traceparent":"00-')).length).toBeGreaterThanOrEqual(4);
    for (const secret of [RAW_KEY, CREDENTIAL, BODY_MARK])
      expect(logs, `logs hold ${secret}`).not.toContain(secret);

    await gateway.close();
    await new Promise((r) => server.close(r));
    for (const [name, path] of [
      ['gateway', gwDir],
      ['middleware', mwDir],
    ] as const) {
      const db = new DatabaseSync(join(path, 'idem.db'), { readOnly: true });
      const stored = db.prepare(`SELECT count(*) AS n FROM idem_records WHERE outcome IS NOT NULL`).get();
      db.close();
      expect(Number(stored?.n), `${name} store: outcomes were stored (the check reads them)`).toBeGreaterThan(
        0,
      );
      const bytes = filesText(path);
      expect(bytes, `${name} store holds the raw key`).not.toContain(RAW_KEY);
      expect(bytes, `${name} store holds the credential`).not.toContain(CREDENTIAL);
    }
  });
});

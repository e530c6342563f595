/**
 * idem/mcp over the Streamable HTTP transport (real node:http server, real SDK client): a
 * JSON-RPC request re-sent in its session runs once (the session + request id key), a keyed
 * retry after a client timeout gets the first result, and two sessions never share a result.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { callToolOnce, ERROR_META, type McpIdemOptions, REPLAYED_META } from 'idem/mcp';
import { afterEach, describe, expect, it } from 'vitest';
import { keyedCall, mcpSetup, textOf, toolServer } from './setup.ts';

const t = mcpSetup();
let http: Server | undefined;
const clients: Client[] = [];

async function closeServer() {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  http?.closeAllConnections();
  http?.close();
  if (http) await once(http, 'close');
  http = undefined;
}
afterEach(closeServer);

/**
 * A stateful Streamable HTTP endpoint: one transport and one wrapped McpServer per session. An
 * `x-tenant` header stands in for an auth middleware: it sets `req.auth`, which the SDK hands to
 * tools as `extra.authInfo`.
 */
async function serve(options: Partial<McpIdemOptions> = {}): Promise<URL> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  http = createServer(async (req, res) => {
    const tenant = req.headers['x-tenant'];
    if (typeof tenant === 'string')
      Object.assign(req, { auth: { token: 't', clientId: tenant, scopes: [] } });
    const id = req.headers['mcp-session-id'] as string | undefined;
    let transport = id ? sessions.get(id) : undefined;
    if (!transport) {
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: true,
        onsessioninitialized: (sid) => void sessions.set(sid, transport!),
      });
      await toolServer(t.idem(), t.counters, options).connect(transport);
    }
    await transport.handleRequest(req, res);
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  return new URL(`http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`);
}

async function connect(url: URL, tenant?: string) {
  const transport = new StreamableHTTPClientTransport(url, {
    ...(tenant && { requestInit: { headers: { 'x-tenant': tenant } } }),
  });
  const client = new Client({ name: 'test', version: '1.0.0' });
  await client.connect(transport);
  clients.push(client);
  return { client, sessionId: transport.sessionId!, protocol: transport.protocolVersion ?? '2025-06-18' };
}

describe('idem/mcp, Streamable HTTP transport', () => {
  /** The SDK's stateless pattern: a server and transport per request, no session; auth sets `req.auth`. */
  async function serveStateless(options: Partial<McpIdemOptions> = {}): Promise<URL> {
    http = createServer(async (req, res) => {
      const user = String(req.headers['x-user']);
      Object.assign(req, { auth: { token: user, clientId: 'my-app', scopes: [], extra: { user } } });
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: true,
      });
      const server = toolServer(t.idem(), t.counters, options);
      res.on('close', () => void server.close());
      await server.connect(transport);
      await transport.handleRequest(req, res);
    });
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    return new URL(`http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`);
  }
  const asUser = async (url: URL, user: string) => {
    const client = new Client({ name: user, version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(url, { requestInit: { headers: { 'x-user': user } } }),
    );
    clients.push(client);
    return client;
  };

  it('stateless HTTP (no session), one OAuth client for two users: a keyed call is refused without scope; with scope = the user, never shared', async () => {
    const args = { order: 'U', amount: 2 };
    const open = await serveStateless();
    for (const user of ['alice', 'bob']) {
      const r = await keyedCall(await asUser(open, user), 'refund', args, 'k1');
      expect(r).toMatchObject({ isError: true, _meta: { [ERROR_META]: 'invalid_option' } });
    }
    expect(t.counters.runs.refund).toBeUndefined();
    await closeServer();
    const url = await serveStateless({ scope: (extra) => extra.authInfo?.extra?.user as string | undefined });
    const alice = await asUser(url, 'alice');
    const bob = await asUser(url, 'bob');
    expect(textOf(await keyedCall(alice, 'refund', args, 'k1'))).toBe('refunded 2 on U (#1)');
    expect(textOf(await keyedCall(bob, 'refund', args, 'k1'))).toBe('refunded 2 on U (#2)');
    const again = await keyedCall(alice, 'refund', args, 'k1');
    expect(again).toMatchObject({
      content: [{ text: 'refunded 2 on U (#1)' }],
      _meta: { [REPLAYED_META]: true },
    });
  });

  it('a JSON-RPC request re-sent in its session (same id) runs once: key = session + request id', async () => {
    const url = await serve();
    const { sessionId, protocol } = await connect(url);
    const post = async (id: number) => {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': sessionId,
          'mcp-protocol-version': protocol,
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: { name: 'refund', arguments: { order: 'H-1', amount: 3 } },
        }),
      });
      expect(res.status).toBe(200);
      return ((await res.json()) as { result: CallToolResult }).result;
    };
    const first = await post(1001);
    const resent = await post(1001);
    const next = await post(1002);
    expect(textOf(first)).toBe('refunded 3 on H-1 (#1)');
    expect(resent).toMatchObject({ content: first.content, _meta: { [REPLAYED_META]: true } });
    expect(textOf(next)).toBe('refunded 3 on H-1 (#2)'); // a new request is a new call
    expect(t.counters.runs.refund).toBe(2);
  });

  it('callToolOnce over HTTP: a timed-out try and its retries run the tool once', async () => {
    const url = await serve();
    const { client } = await connect(url);
    t.counters.delayMs = 400;
    const r = await callToolOnce(
      client,
      { name: 'refund', arguments: { order: 'I-2', amount: 8 } },
      { key: 'http-slow', timeout: 150, attempts: 4, backoffMs: 20 },
    );
    expect(textOf(r)).toBe('refunded 8 on I-2 (#1)');
    expect(t.counters.runs.refund).toBe(1);
  });

  it('two sessions with the same key do not share a result (no cross-session leak by default)', async () => {
    const url = await serve();
    const a = await connect(url);
    const b = await connect(url);
    const args = { order: 'J', amount: 1 };
    expect(textOf(await keyedCall(a.client, 'refund', args, 'k'))).toBe('refunded 1 on J (#1)');
    expect(textOf(await keyedCall(b.client, 'refund', args, 'k'))).toBe('refunded 1 on J (#2)');
    expect(textOf(await keyedCall(b.client, 'refund', args, 'k'))).toBe('refunded 1 on J (#2)');
  });

  it('concurrent duplicates in one session run the tool once', async () => {
    const url = await serve();
    const { client } = await connect(url);
    t.counters.delayMs = 150;
    const all = await Promise.all(
      Array.from({ length: 4 }, () => keyedCall(client, 'refund', { order: 'M', amount: 4 }, 'dup')),
    );
    expect(new Set(all.map(textOf))).toEqual(new Set(['refunded 4 on M (#1)']));
    expect(t.counters.runs.refund).toBe(1);
  });

  it('a client that reconnects (new session) and retries its key: not shared by default; shared with scope = the tenant, never with another tenant', async () => {
    const args = { order: 'N', amount: 6 };
    const retryAcrossSessions = async (url: URL, tenant: string) => {
      const first = await connect(url, tenant);
      const a = textOf(await keyedCall(first.client, 'refund', args, 'retry-me'));
      await first.client.close();
      const again = await connect(url, tenant);
      expect(again.sessionId).not.toBe(first.sessionId);
      return [a, textOf(await keyedCall(again.client, 'refund', args, 'retry-me'))];
    };
    // default scope: OAuth client + session. A client id may name an app shared by many users.
    expect(await retryAcrossSessions(await serve(), 'app-1')).toEqual([
      'refunded 6 on N (#1)',
      'refunded 6 on N (#2)',
    ]);
    await closeServer();
    // scope: the tenant (here the authenticated client): the reconnected retry gets the first result
    const url = await serve({ scope: (extra) => extra.authInfo?.clientId });
    expect(await retryAcrossSessions(url, 'tenant-a')).toEqual([
      'refunded 6 on N (#3)',
      'refunded 6 on N (#3)',
    ]);
    const other = await connect(url, 'tenant-b');
    expect(textOf(await keyedCall(other.client, 'refund', args, 'retry-me'))).toBe('refunded 6 on N (#4)');
    expect(t.counters.runs.refund).toBe(4);
  });

  it('a workflow step calling a server outside the run (over HTTP): the step re-runs with the same ctx.downstreamKey as key, the tool runs once', async () => {
    const url = await serve();
    const { client } = await connect(url);
    let failAfterCall = true;
    const body = (run: import('idem').WorkflowRun) =>
      run.step('refund', async (ctx) => {
        const r = await callToolOnce(
          client,
          { name: 'refund', arguments: { order: 'P', amount: 7 } },
          { key: ctx.downstreamKey },
        );
        if (failAfterCall) throw new Error('the step dies after its call, before recording');
        return textOf(r);
      });
    await expect(t.idem().workflow('order:P', body)).rejects.toThrow('before recording');
    failAfterCall = false;
    expect(await t.idem().workflow('order:P', body)).toBe('refunded 7 on P (#1)');
    expect(t.counters.runs.refund).toBe(1);
  });
});

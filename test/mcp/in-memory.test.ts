/**
 * idem/mcp over the SDK's in-memory transport: a real Client and McpServer in one process.
 * Retried, concurrent and re-sent calls run a tool once; read-only tools pass through; thrown
 * errors release the key, `isError` results are stored; callers in other scopes never share.
 * On SQLite, Postgres and Redis (the wrapper only uses the Store contract).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { InvalidOptionError } from 'idem';
import {
  callToolOnce,
  ERROR_META,
  idempotentHandler,
  type McpIdemOptions,
  REPLAYED_META,
  type ToolExtra,
  withIdem,
} from 'idem/mcp';
import { describe, expect, it } from 'vitest';
import { keyedCall, mcpSetup, textOf, toolServer } from './setup.ts';
import { STORES } from './stores.ts';

describe.each(STORES)('idem/mcp, in-memory transport, %s store', (_name, store) => {
  const t = mcpSetup(store);

  // The in-memory transport has no session: without `scope`, keyed calls are refused (see below).
  async function connect(options: Partial<McpIdemOptions> = {}, authInfo?: AuthInfo, server?: McpServer) {
    const s = server ?? toolServer(t.idem(), t.counters, { scope: () => 'caller-1', ...options });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    if (authInfo) {
      const send = clientSide.send.bind(clientSide);
      clientSide.send = (message, opts) => send(message, { ...opts, authInfo });
    }
    const client = new Client({ name: 'test', version: '1.0.0' });
    await Promise.all([s.connect(serverSide), client.connect(clientSide)]);
    return { client, server: s };
  }

  it('a call retried with its key runs once; every retry gets the first result, marked replayed', async () => {
    const { client } = await connect();
    const args = { order: 'A-1', amount: 40 };
    const first = await keyedCall(client, 'refund', args, 'k1');
    const again = await keyedCall(client, 'refund', args, 'k1');
    expect(textOf(first)).toBe('refunded 40 on A-1 (#1)');
    expect(first._meta?.[REPLAYED_META]).toBeUndefined();
    expect(again).toMatchObject({ content: first.content, _meta: { [REPLAYED_META]: true } });
    expect(textOf(await keyedCall(client, 'refund', args, 'k2'))).toBe('refunded 40 on A-1 (#2)');
    expect(t.counters.runs.refund).toBe(2);
    expect(t.counters.downstream[0]).not.toBe(t.counters.downstream[1]);
  });

  it('callToolOnce: the first try times out while the tool runs, the retry gets its result', async () => {
    const { client } = await connect();
    t.counters.delayMs = 400;
    const r = await callToolOnce(
      client,
      { name: 'refund', arguments: { order: 'B-2', amount: 5 } },
      { key: 'slow', timeout: 150, attempts: 4, backoffMs: 20 },
    );
    expect(textOf(r)).toBe('refunded 5 on B-2 (#1)');
    expect(r._meta?.[REPLAYED_META]).toBe(true);
    expect(t.counters.runs.refund).toBe(1);
  });

  it('concurrent duplicates run the tool once and all get its result', async () => {
    const { client } = await connect();
    t.counters.delayMs = 100;
    const all = await Promise.all(
      Array.from({ length: 6 }, () => keyedCall(client, 'refund', { order: 'C-3', amount: 1 }, 'same')),
    );
    expect(new Set(all.map(textOf))).toEqual(new Set(['refunded 1 on C-3 (#1)']));
    expect(all.filter((r) => r._meta?.[REPLAYED_META]).length).toBe(5);
    expect(t.counters.runs.refund).toBe(1);
  });

  it('the same key with other arguments is refused (fingerprint_mismatch), nothing runs', async () => {
    const { client } = await connect();
    await keyedCall(client, 'refund', { order: 'D-4', amount: 10 }, 'k');
    const other = await keyedCall(client, 'refund', { order: 'D-4', amount: 99 }, 'k');
    expect(other).toMatchObject({ isError: true, _meta: { [ERROR_META]: 'fingerprint_mismatch' } });
    expect(t.counters.runs.refund).toBe(1);
  });

  it('readOnlyHint tools pass through; idempotentHint tools are still deduplicated', async () => {
    const { client } = await connect();
    for (let i = 0; i < 2; i++) {
      await keyedCall(client, 'lookup', { order: 'E' }, 'look');
      await keyedCall(client, 'reserve', { seat: '12A' }, 'seat');
    }
    expect(t.counters.runs).toEqual({ lookup: 2, reserve: 1 });
  });

  it('errors: a thrown error releases the key (the retry runs); an isError result is stored', async () => {
    const { client } = await connect();
    t.counters.throws = 1;
    const failed = await keyedCall(client, 'flaky', { x: 1 }, 'f');
    expect(failed).toMatchObject({ isError: true });
    expect(textOf(failed)).toMatch(/upstream down \(#1\)/);
    const retried = await keyedCall(client, 'flaky', { x: 1 }, 'f');
    expect([textOf(retried), retried.isError]).toEqual(['flaky 1 (#2)', undefined]);
    expect(t.counters.downstream[0]).toBe(t.counters.downstream[1]); // same call, same downstream key

    const denied = await keyedCall(client, 'deny', { reason: 'over limit' }, 'd');
    const replay = await keyedCall(client, 'deny', { reason: 'over limit' }, 'd');
    expect(denied).toMatchObject({ isError: true, content: [{ text: 'over limit (#1)' }] });
    expect(replay).toMatchObject({
      isError: true,
      content: denied.content,
      _meta: { [REPLAYED_META]: true },
    });
    expect(t.counters.runs).toEqual({ flaky: 2, deny: 1 });
  });

  it('releaseIf: an isError result it picks is not stored, so the retry runs the tool again', async () => {
    const { client } = await connect({ releaseIf: (r) => textOf(r).startsWith('transient') });
    await keyedCall(client, 'deny', { reason: 'transient: busy' }, 'd');
    await keyedCall(client, 'deny', { reason: 'transient: busy' }, 'd');
    await keyedCall(client, 'deny', { reason: 'final' }, 'e');
    await keyedCall(client, 'deny', { reason: 'final' }, 'e');
    expect(t.counters.runs.deny).toBe(3);
  });

  it('scope: two authenticated clients with the same key never share a result', async () => {
    const auth = (clientId: string): AuthInfo => ({ token: `t-${clientId}`, clientId, scopes: [] });
    const byTenant = { scope: (extra: ToolExtra) => extra.authInfo?.clientId };
    const a = await connect(byTenant, auth('tenant-a'));
    const b = await connect(byTenant, auth('tenant-b'), toolServer(t.idem(), t.counters, byTenant));
    const args = { order: 'F', amount: 2 };
    const ra = await keyedCall(a.client, 'refund', args, 'shared-key');
    const rb = await keyedCall(b.client, 'refund', args, 'shared-key');
    expect([textOf(ra), textOf(rb)]).toEqual(['refunded 2 on F (#1)', 'refunded 2 on F (#2)']);
    expect(textOf(await keyedCall(a.client, 'refund', args, 'shared-key'))).toBe('refunded 2 on F (#1)');
    // a scope function that finds no tenant falls back to the default: no session, so refused
    const none = { scope: () => undefined };
    const c = await connect(none, auth('tenant-c'));
    const refused = await keyedCall(c.client, 'refund', args, 'shared-key');
    expect(refused).toMatchObject({ isError: true, _meta: { [ERROR_META]: 'invalid_option' } });
    expect(t.counters.runs.refund).toBe(2);
  });

  it('no session and no scope (stdio, in-memory): a keyed call is refused, never scoped by the client id alone', async () => {
    const auth: AuthInfo = { token: 't', clientId: 'my-app', scopes: [] };
    const alice = await connect({ scope: undefined }, auth);
    const bob = await connect({ scope: undefined }, auth, toolServer(t.idem(), t.counters));
    const args = { order: 'S', amount: 1 };
    for (const who of [alice, bob]) {
      const r = await keyedCall(who.client, 'refund', args, 'same-key');
      expect(r).toMatchObject({ isError: true, _meta: { [ERROR_META]: 'invalid_option' } });
      expect(textOf(r)).toMatch(/without a session.*scope option/);
    }
    expect(t.counters.runs.refund).toBeUndefined();
    await keyedCall(alice.client, 'ping', {}); // an unkeyed call still runs (nothing is stored)
    expect(t.counters.runs.ping).toBe(1);
  });

  it('a scope hook answering "", [], [""], null or a number: a typed invalid_option error, never a shared scope', async () => {
    const args = { order: 'T', amount: 1 };
    for (const bad of ['', [], [''], ['ok', ''], null, 42]) {
      const a = await connect({ scope: () => bad as never });
      const r = await keyedCall(a.client, 'refund', args, 'k');
      expect(r).toMatchObject({ isError: true, _meta: { [ERROR_META]: 'invalid_option' } });
      expect(textOf(r)).toMatch(/scope returned .*non-empty string/);
    }
    expect(t.counters.runs.refund).toBeUndefined();
  });

  it('unkeyed calls (no _meta key, no session) run every time, or are refused with unkeyed: reject', async () => {
    const open = await connect();
    await keyedCall(open.client, 'ping', {});
    await keyedCall(open.client, 'ping', {});
    expect(t.counters.runs.ping).toBe(2);
    const strict = await connect({ unkeyed: 'reject' });
    const refused = await keyedCall(strict.client, 'ping', {});
    expect(refused).toMatchObject({ isError: true, _meta: { [ERROR_META]: 'invalid_key' } });
    expect(t.counters.runs.ping).toBe(2);
    expect(textOf(await keyedCall(strict.client, 'ping', {}, 'p'))).toBe('pong (#3)');
  });

  it('bad options and keys: typed errors, never a silent bypass', async () => {
    const idem = t.idem();
    const server = toolServer(idem, t.counters);
    expect(() => withIdem(server, { idem, scpe: () => 'x' } as never)).toThrow(/did you mean scope/);
    expect(() => withIdem(server, {} as never)).toThrow(InvalidOptionError);
    expect(() => idempotentHandler({ name: 'x', hasArgs: false }, () => 1, { idem, lease: 0 })).toThrow(
      /lease must be at least/,
    );
    const { client } = await connect();
    const r = await client.callTool({ name: 'ping', arguments: {}, _meta: { 'idem/key': 42 } });
    expect(r).toMatchObject({ isError: true, _meta: { [ERROR_META]: 'invalid_key' } });
    expect(t.counters.runs.ping).toBeUndefined();
  });
});

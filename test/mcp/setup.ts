/**
 * What the idem/mcp tests share: a real MCP server (`McpServer`) wrapped with `withIdem`, its
 * tools counting their executions, and a fresh SQLite idem instance per test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { createIdem, type Idem, type Store } from 'idem';
import { KEY_META, type McpIdemOptions, toolCall, withIdem } from 'idem/mcp';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { z } from 'zod';

export interface Counters {
  runs: Record<string, number>;
  /** The downstream key every execution saw, in order. */
  downstream: string[];
  /** Milliseconds the refund tool takes. */
  delayMs: number;
  /** The next `throws` executions of `flaky` throw. */
  throws: number;
}

/** A server with the test tools, wrapped with idem (options added to `{ idem }`). */
export function toolServer(idem: Idem, c: Counters, options: Partial<McpIdemOptions> = {}): McpServer {
  const server = withIdem(new McpServer({ name: 'shop', version: '1.0.0' }), { idem, ...options });
  const count = (name: string) => {
    c.runs[name] = (c.runs[name] ?? 0) + 1;
    c.downstream.push(toolCall()?.downstreamKey ?? '(none)');
    return c.runs[name];
  };
  const text = (t: string, isError = false): CallToolResult => ({
    content: [{ type: 'text', text: t }],
    ...(isError && { isError }),
  });
  server.registerTool(
    'refund',
    { description: 'Refunds an order', inputSchema: { order: z.string(), amount: z.number() } },
    async ({ order, amount }, extra) => {
      const n = count('refund');
      if (c.delayMs) await new Promise((r) => setTimeout(r, c.delayMs));
      if (extra.signal.aborted) throw new Error('aborted'); // a tool that honours its signal
      return text(`refunded ${amount} on ${order} (#${n})`);
    },
  );
  server.registerTool(
    'lookup',
    { inputSchema: { order: z.string() }, annotations: { readOnlyHint: true } },
    async ({ order }) => text(`order ${order} (#${count('lookup')})`),
  );
  server.registerTool(
    'reserve',
    { inputSchema: { seat: z.string() }, annotations: { idempotentHint: true } },
    async ({ seat }) => text(`seat ${seat} (#${count('reserve')})`),
  );
  server.registerTool('flaky', { inputSchema: { x: z.number() } }, async ({ x }) => {
    const n = count('flaky');
    if (c.throws > 0) {
      c.throws--;
      throw new Error(`upstream down (#${n})`);
    }
    return text(`flaky ${x} (#${n})`);
  });
  server.registerTool('deny', { inputSchema: { reason: z.string() } }, async ({ reason }) =>
    text(`${reason} (#${count('deny')})`, true),
  );
  server.registerTool('ping', {}, async () => text(`pong (#${count('ping')})`));
  return server;
}

/** A fresh idem per test, on `store()` (default: a SQLite file), in a scope of its own. */
export function mcpSetup(store?: () => Store) {
  let dir: string;
  let idem: Idem;
  let n = 0;
  const counters: Counters = { runs: {}, downstream: [], delayMs: 0, throws: 0 };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'idem-mcp-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(() => {
    const scope = `test-${process.pid}-${++n}`;
    idem = createIdem({ store: store ? store() : sqliteStore({ path: join(dir, `t${n}.db`) }), scope });
    Object.assign(counters, { runs: {}, downstream: [], delayMs: 0, throws: 0 });
  });
  afterEach(() => idem.close());
  return { idem: () => idem, counters };
}

/** A tool call with `_meta["idem/key"]`. */
export function keyedCall(client: Client, name: string, args: Record<string, unknown>, key?: string) {
  return client.callTool({
    name,
    arguments: args,
    ...(key !== undefined && { _meta: { [KEY_META]: key } }),
  }) as Promise<CallToolResult>;
}

/** The first text of a result. */
export const textOf = (r: CallToolResult) => (r.content[0] as { text: string }).text;

/**
 * Issue 10: what acting once costs a tool call, on SQLite and Redis. An MCP tool called by a
 * real client over the SDK's in-memory transport, bare and wrapped with `withIdem` (a new key
 * per call: claim + run + complete; the same key: a replay), and an AI SDK tool's `execute`,
 * bare and wrapped with `idempotentTool` (a new run per call, and a replay).
 *
 * ```
 * MCP bare         client.callTool → server → handler
 * MCP new key      client.callTool(_meta idem/key) → claim → handler → complete
 * MCP replay       client.callTool(same key) → claim finds the completed record
 * AI SDK bare      tool.execute(input, options)
 * AI SDK new run   idem.key(run, step, tool, args) → claim → execute → complete
 * AI SDK replay    the same run, step and arguments → the stored output
 * ```
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { tool } from 'ai';
import { createIdem, type Idem, type Store } from 'idem';
import { idempotentTool } from 'idem/ai-sdk';
import { withIdem } from 'idem/mcp';
import { z } from 'zod';
import type { RunConfig } from '../lib/config.ts';
import { reachable, SERVICES } from '../lib/env.ts';
import { deletePrefix } from '../lib/gateway-procs.ts';
import { measure } from '../lib/measure.ts';
import { emptySection, type SectionResult, throughputTable } from '../lib/report.ts';
import { LEASE_MS, TTL_MS } from '../lib/workload.ts';

interface Backend {
  name: string;
  store: () => Store;
  cleanup: () => Promise<unknown>;
}

async function backends(): Promise<{ list: Backend[]; skipped: string[] }> {
  const { sqliteStore } = await import('idem/sqlite');
  const dir = mkdtempSync(join(tmpdir(), 'idem-bench-tools-'));
  const list: Backend[] = [
    {
      name: 'sqlite',
      store: () => sqliteStore({ path: join(dir, 'tools.db') }),
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    },
  ];
  const skipped: string[] = [];
  if (await reachable(SERVICES.redis)) {
    const { redisStore } = await import('idem/redis');
    const prefix = `idem_bench_tools_${process.pid}_${randomBytes(3).toString('hex')}`;
    list.push({
      name: 'redis',
      store: () => redisStore({ url: SERVICES.redis, prefix }),
      cleanup: () => deletePrefix(prefix),
    });
  } else skipped.push(`redis is not reachable at ${SERVICES.redis}`);
  return { list, skipped };
}

/** A connected MCP client whose server has one `refund` tool, wrapped with idem or not. */
async function mcp(idem: Idem | undefined) {
  const server = new McpServer({ name: 'bench', version: '1.0.0' });
  const s = idem ? withIdem(server, { idem, scope: () => 'bench' }) : server; // in-memory: no session
  s.registerTool('refund', { inputSchema: { order: z.string() } }, async ({ order }) => ({
    content: [{ type: 'text', text: `refunded ${order}` }],
  }));
  const [a, b] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: 'bench', version: '1.0.0' });
  await Promise.all([s.connect(b), client.connect(a)]);
  return client;
}

export async function toolsSection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('tools', 'Tools that act once: MCP and AI SDK tool calls (issue 10)');
  const { list, skipped } = await backends();
  for (const why of skipped) s.notes.push(`skipped: ${why}`);
  const opts = { concurrency: 1, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
  const tag = randomBytes(3).toString('hex');
  try {
    for (const b of list) {
      const idem = createIdem({ store: b.store(), ttl: TTL_MS, lease: LEASE_MS });
      const [bare, wrapped] = [await mcp(undefined), await mcp(idem)];
      const call = (client: Client, key?: string) =>
        client.callTool({
          name: 'refund',
          arguments: { order: 'A-1' },
          ...(key && { _meta: { 'idem/key': key } }),
        });
      await call(wrapped, `${tag}:replayed`);
      const mcpResults = await measure(
        [
          { name: 'MCP call, bare server', op: () => call(bare) },
          {
            name: 'withIdem, new key',
            baseline: 'MCP call, bare server',
            op: (i) => call(wrapped, `${tag}:${i}`),
          },
          {
            name: 'withIdem, replay',
            baseline: 'MCP call, bare server',
            op: () => call(wrapped, `${tag}:replayed`),
          },
        ],
        opts,
      );
      s.tables.push(throughputTable(`${b.name}: one MCP tool call (in-memory transport)`, mcpResults));
      await Promise.all([bare.close(), wrapped.close()]);

      const lookup = tool({
        inputSchema: z.object({ q: z.string() }),
        execute: async ({ q }) => `answer to ${q}`,
      });
      const once = idempotentTool(lookup, {
        idem,
        name: 'lookup',
        run: ({ context }) => (context as { run: string }).run,
      });
      const options = (run: string) => ({ toolCallId: 'c', messages: [], context: { run } });
      await once.execute!({ q: '42' }, options(`${tag}:replayed`));
      const sdkResults = await measure(
        [
          { name: 'AI SDK execute, bare', op: () => lookup.execute!({ q: '42' }, options('bare')) },
          {
            name: 'idempotentTool, new run',
            baseline: 'AI SDK execute, bare',
            op: (i) => once.execute!({ q: '42' }, options(`${tag}:${i}`)),
          },
          {
            name: 'idempotentTool, replay',
            baseline: 'AI SDK execute, bare',
            op: () => once.execute!({ q: '42' }, options(`${tag}:replayed`)),
          },
        ],
        opts,
      );
      s.tables.push(throughputTable(`${b.name}: one AI SDK tool execute`, sdkResults));
      await idem.close();
    }
    s.facts.push(
      `stores: ${list.map((b) => b.name).join(', ')}; lease ${LEASE_MS} ms, ttl ${TTL_MS} ms; one caller at a time`,
    );
    s.notes.push(
      '`new key` / `new run` pay a claim and a completion in the store around the tool; `replay` pays the claim that finds the completed record (no tool run). The bare rows are the floor: the SDK round trip with no store.',
    );
  } finally {
    for (const b of list) await b.cleanup().catch(() => {});
  }
  return s;
}

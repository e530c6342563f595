/**
 * idem/mcp inside a workflow run: a tool call made by an in-process client while a run is
 * active is a journaled step `mcp:<tool>` of that run (its key and downstream key come from
 * the journal, not from `_meta`), and a resumed run gets the recorded result.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { expect, it } from 'vitest';
import { withActiveRun } from '../../src/workflow/ambient.ts';
import { keyedCall, mcpSetup, textOf, toolServer } from '../mcp/setup.ts';
import { fakeRun } from './fake-run.ts';

const t = mcpSetup();

it('an MCP tool call inside a run is the step mcp:<tool>; the resumed run replays it', async () => {
  const server = toolServer(t.idem(), t.counters);
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: 'test', version: '1.0.0' });
  await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
  const run = fakeRun('claim-9');
  const args = { order: 'K-1', amount: 12 };
  const first = await withActiveRun(run, () => keyedCall(client, 'refund', args, 'ignored-in-a-run'));
  run.resume();
  const again = await withActiveRun(run, () => keyedCall(client, 'refund', args));
  expect(textOf(first)).toBe('refunded 12 on K-1 (#1)');
  expect(again.content).toEqual(first.content);
  expect(run.asked).toEqual(['mcp:refund#1', 'mcp:refund#1']);
  expect(t.counters).toMatchObject({ runs: { refund: 1 }, downstream: ['claim-9/mcp:refund#1'] });
  await client.close();
});

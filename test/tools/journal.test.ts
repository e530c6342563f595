/**
 * The tool wrappers inside the real run journal (`idem.workflow`): an AI SDK tool and an MCP
 * tool called in a run record as its steps (`tool:<name>`, `mcp:<name>`); a run that dies after
 * its tool ran and is invoked again replays the tool's step instead of running it; a resumed
 * run whose model re-issues the call under a new toolCallId still gets the recorded output.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { generateText, stepCountIs, tool } from 'ai';
import { idempotentTool, toolCall } from 'idem/ai-sdk';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { aiSdkSetup, bareModel } from '../ai/ai-sdk-setup.ts';
import { keyedCall, textOf, toolServer } from '../mcp/setup.ts';

const t = aiSdkSetup();
const prompt = 'Look up the answer, then say it.';

describe('tools inside idem.workflow (the real journal, SQLite)', () => {
  it('AI SDK: the tool is step tool:lookup#1; the run resumed after a crash replays it', async () => {
    const seen = { runs: 0, downstream: [] as string[] };
    let crash = true;
    const lookup = tool({
      inputSchema: z.object({ q: z.string() }),
      execute: async ({ q }) => {
        seen.runs++;
        seen.downstream.push(toolCall()!.downstreamKey);
        return `the answer to ${q} (execution #${seen.runs})`;
      },
    });
    const tools = { lookup: idempotentTool(lookup, { idem: t.idem(), name: 'lookup' }) };
    t.server().set({ toolsUntilResult: true });
    const body = async (run: import('idem').WorkflowRun) => {
      const r = await generateText({
        model: bareModel(t.server().url, 'chat'),
        prompt,
        tools,
        stopWhen: stepCountIs(5),
      });
      if (crash) throw new Error('the process stops here');
      return {
        ids: r.steps[0]!.toolCalls.map((c) => c.toolCallId),
        output: r.steps[0]!.toolResults[0]!.output,
        steps: run.steps.map((s) => `${s.stepId}:${s.replayed ? 'replayed' : 'ran'}`),
      };
    };
    await expect(t.idem().workflow('ticket:1', body)).rejects.toThrow('the process stops here');
    crash = false;
    const out = await t.idem().workflow('ticket:1', body);
    expect(out).toEqual({
      ids: ['call_3'], // the resumed loop's model issued the call again, under a new id
      output: 'the answer to 42 (execution #1)',
      steps: ['tool:lookup#1:replayed'],
    });
    expect(seen.runs).toBe(1);
    const info = await t.idem().runs.get('ticket:1');
    expect(info.steps.map((s) => [s.stepId, s.status])).toEqual([['tool:lookup#1', 'completed']]);
    expect(seen.downstream).toHaveLength(1);
  });

  it('MCP: an in-process tool call in a run is step mcp:refund#1, replayed when the run resumes', async () => {
    const counters = {
      runs: {} as Record<string, number>,
      downstream: [] as string[],
      delayMs: 0,
      throws: 0,
    };
    const server = toolServer(t.idem(), counters);
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    const client = new Client({ name: 'test', version: '1.0.0' });
    await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
    let crash = true;
    const body = async (run: import('idem').WorkflowRun) => {
      const r = await keyedCall(client, 'refund', { order: 'L-1', amount: 9 });
      if (crash) throw new Error('crash');
      return { text: textOf(r), steps: run.steps.map((s) => `${s.stepId}:${s.replayed}`) };
    };
    await expect(t.idem().workflow('claim:1', body)).rejects.toThrow('crash');
    crash = false;
    expect(await t.idem().workflow('claim:1', body)).toEqual({
      text: 'refunded 9 on L-1 (#1)',
      steps: ['mcp:refund#1:true'],
    });
    expect(counters.runs.refund).toBe(1);
    await client.close();
  });
});

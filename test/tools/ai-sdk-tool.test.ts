/**
 * idempotentTool with the real `ai` generateText tool loop against the local OpenAI-compatible
 * server (test/ai/server.ts): the tool's execute runs once per (run, toolCallId), and once per
 * logical call when a resumed run re-issues the call under a new toolCallId.
 */
import { generateText, type ModelMessage, stepCountIs, tool } from 'ai';
import { InvalidOptionError } from 'idem';
import { idempotentTool, idempotentTools, toolCall } from 'idem/ai-sdk';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { withActiveRun } from '../../src/workflow/ambient.ts';
import { aiSdkSetup, bareModel } from '../ai/ai-sdk-setup.ts';
import { fakeRun } from './fake-run.ts';

const t = aiSdkSetup();
const prompt = 'Look up the answer, then say it.';

function lookupTool() {
  const seen = {
    runs: 0,
    downstream: [] as string[],
    throws: 0,
    crash: undefined as AbortController | undefined,
  };
  const lookup = tool({
    description: 'Looks the answer up',
    inputSchema: z.object({ q: z.string() }),
    execute: async ({ q }) => {
      seen.runs++;
      seen.downstream.push(toolCall()?.downstreamKey ?? '(none)');
      if (seen.throws > 0) {
        seen.throws--;
        throw new Error('lookup service down');
      }
      seen.crash?.abort(new Error('the process stops here')); // dies after the tool, before step 2
      return `the answer to ${q} (execution #${seen.runs})`;
    },
  });
  return { lookup, seen };
}

const opts = (toolCallId: string, messages: ModelMessage[] = [{ role: 'user', content: prompt }]) => ({
  toolCallId,
  messages,
  context: {},
});

describe('idempotentTool in the AI SDK tool loop', () => {
  it('a resumed run re-issues the call with a new toolCallId: the tool does not run again', async () => {
    const { lookup, seen } = lookupTool();
    const tools = { lookup: idempotentTool(lookup, { idem: t.idem(), name: 'lookup', run: 'run-7' }) };
    t.server().set({ toolsUntilResult: true });
    const loop = (signal?: AbortSignal) =>
      generateText({
        model: bareModel(t.server().url, 'chat'),
        prompt,
        tools,
        stopWhen: stepCountIs(5),
        ...(signal && { abortSignal: signal }),
      });
    seen.crash = new AbortController();
    await expect(loop(seen.crash.signal)).rejects.toThrow();
    seen.crash = undefined;
    expect(seen.runs).toBe(1);

    const resumed = await loop();
    const call = resumed.steps[0]!.toolCalls[0]!;
    expect(call.toolCallId).toBe('call_2'); // the model's new call id for the same logical call
    expect(resumed.steps[0]!.toolResults[0]!.output).toBe('the answer to 42 (execution #1)');
    expect(resumed.text).toMatch(/forty-two/);
    expect(seen.runs).toBe(1);

    const control = { lookup: idempotentTool(lookup, { idem: t.idem(), name: 'lookup', run: 'run-8' }) };
    await generateText({
      model: bareModel(t.server().url, 'chat'),
      prompt,
      tools: control,
      stopWhen: stepCountIs(5),
    });
    expect(seen.runs).toBe(2); // another run is another call
  });

  it('once per (run, toolCallId): a repeated or concurrent execute runs once; other steps, arguments or runs run', async () => {
    const { lookup, seen } = lookupTool();
    const wrapped = idempotentTool(lookup, { idem: t.idem(), name: 'lookup', run: 'r' });
    const exec = (input: { q: string }, o: ReturnType<typeof opts>) =>
      wrapped.execute!(input, o) as Promise<string>;
    const outs = await Promise.all([1, 2, 3].map(() => exec({ q: 'a' }, opts('c1'))));
    expect(new Set(outs)).toEqual(new Set(['the answer to a (execution #1)']));
    expect(await exec({ q: 'a' }, opts('c1'))).toBe('the answer to a (execution #1)');
    expect(await exec({ q: 'b' }, opts('c2'))).toBe('the answer to b (execution #2)');
    const later: ModelMessage[] = [
      { role: 'user', content: prompt },
      { role: 'assistant', content: 'first' },
    ];
    expect(await exec({ q: 'a' }, opts('c3', later))).toBe('the answer to a (execution #3)'); // step 2
    expect(seen.runs).toBe(3);
  });

  it('a thrown error is not stored: the next call runs, with the same downstream key', async () => {
    const { lookup, seen } = lookupTool();
    const wrapped = idempotentTool(lookup, { idem: t.idem(), name: 'lookup', run: 'r' });
    seen.throws = 1;
    await expect(wrapped.execute!({ q: 'x' }, opts('c1'))).rejects.toThrow('lookup service down');
    expect(await wrapped.execute!({ q: 'x' }, opts('c2'))).toBe('the answer to x (execution #2)');
    expect(seen.downstream[0]).toBe(seen.downstream[1]);
    expect(seen.downstream[0]).not.toBe('(none)');
  });

  it('no run id outside idem.workflow, bad options: typed errors', async () => {
    const { lookup } = lookupTool();
    const idem = t.idem();
    const bare = idempotentTool(lookup, { idem, name: 'lookup' });
    await expect(bare.execute!({ q: 'x' }, opts('c1'))).rejects.toBeInstanceOf(InvalidOptionError);
    expect(() => idempotentTool(lookup, { idem, nme: 'x' } as never)).toThrow(/did you mean name/);
    expect(() => idempotentTool(lookup, { idem, name: 'l', lease: '1ms' })).toThrow(/lease/);
    expect(() => idempotentTool(tool({ inputSchema: z.object({}) }), { idem, name: 'l' })).toThrow(
      /no execute/,
    );
    const set = idempotentTools({ lookup, client: tool({ inputSchema: z.object({}) }) }, { idem, run: 'r' });
    expect(set.client.execute).toBeUndefined();
    expect(await set.lookup.execute!({ q: 's' }, opts('c9'))).toBe('the answer to s (execution #1)');
  });

  it('inside a workflow run the call is a journaled step tool:<name> keyed by the run, not by run ids', async () => {
    const { lookup, seen } = lookupTool();
    const tools = { lookup: idempotentTool(lookup, { idem: t.idem(), name: 'lookup' }) };
    t.server().set({ toolsUntilResult: true });
    const run = fakeRun('ticket-1');
    const loop = () =>
      withActiveRun(run, () =>
        generateText({ model: bareModel(t.server().url, 'chat'), prompt, tools, stopWhen: stepCountIs(5) }),
      );
    await loop();
    run.resume();
    const again = await loop();
    expect(run.asked).toEqual(['tool:lookup#1', 'tool:lookup#1']);
    expect(again.steps[0]!.toolResults[0]!.output).toBe('the answer to 42 (execution #1)');
    expect(seen).toMatchObject({ runs: 1, downstream: ['ticket-1/tool:lookup#1'] });
  });
});

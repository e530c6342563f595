/**
 * idem/ai-sdk in a multi-step tool loop (real `ai` + `@ai-sdk/openai`, local server, SQLite):
 * each model call has its own key (`<key>:step-<n>`), so a loop that dies after step 1 and runs
 * again bills step 1 once and step 2 once. Tools are not wrapped: they run again on a re-run.
 */
import { generateText, stepCountIs, streamText, tool } from 'ai';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ANSWER, type Api, aiSdkSetup, bareModel, keyed, nth } from './ai-sdk-setup.ts';

const t = aiSdkSetup();
const prompt = 'Look up the answer, then say it.';

describe.each<Api>(['chat', 'responses'])('%s model: a two-step tool loop', (api) => {
  let executions = 0;
  let crash: AbortController | undefined;
  const tools = {
    lookup: tool({
      description: 'Looks the answer up',
      inputSchema: z.object({ q: z.string() }),
      execute: async ({ q }) => {
        executions++;
        crash?.abort(new Error('the process stops here')); // dies after its tool ran, before step 2
        return `the answer to ${q}`;
      },
    }),
  };
  const keyOf = (via: string, key: string) =>
    via === 'headers' ? { headers: { 'Idempotency-Key': key } } : keyed(key);

  it.each(['providerOptions', 'headers'])(
    'keyed by %s: a loop that dies after step 1 and runs again bills each step once',
    async (via) => {
      executions = 0;
      t.server().set({ toolsUntilResult: true });
      const loop = (signal?: AbortSignal) =>
        generateText({
          model: t.model(api),
          prompt,
          tools,
          stopWhen: stepCountIs(5),
          ...keyOf(via, 'run-7'),
          ...(signal && { abortSignal: signal }),
        });
      crash = new AbortController();
      await expect(loop(crash.signal)).rejects.toThrow();
      crash = undefined;
      expect([t.server().billed, executions]).toEqual([1, 1]);

      const resumed = await loop();
      expect(resumed.steps.map((s) => s.providerMetadata?.idem)).toEqual([
        { key: 'run-7:step-1', replayed: true },
        { key: 'run-7:step-2', replayed: false },
      ]);
      expect(resumed.steps[0]?.toolCalls[0]).toMatchObject({ toolCallId: 'call_1', toolName: 'lookup' });
      expect(resumed.text).toBe(nth(2));
      expect([t.server().billed, executions]).toEqual([2, 2]);

      const again = await loop();
      expect(again.text).toBe(nth(2));
      expect(again.steps.every((s) => s.providerMetadata?.idem?.replayed)).toBe(true);
      expect([t.server().billed, executions]).toEqual([2, 3]); // the tool itself is not wrapped
      // every model call got its own key downstream too: no 422 on step 2 behind a gateway
      if (via === 'headers') expect(t.server().keys).toEqual(['run-7:step-1', 'run-7:step-2']);
    },
  );

  it('streamText: the loop run twice bills each step once, the replay streams the same text', async () => {
    t.server().set({ toolsUntilResult: true });
    const loop = async () => {
      const r = streamText({
        model: t.model(api),
        prompt,
        tools,
        stopWhen: stepCountIs(5),
        ...keyed('run-s'),
      });
      return { text: await r.text, steps: (await r.steps).length };
    };
    const first = await loop();
    expect(await loop()).toEqual(first);
    expect(first).toEqual({ text: nth(2), steps: 2 });
    expect(t.server().billed).toBe(2);
  });

  it('control: without idem, running the loop again bills both steps again', async () => {
    t.server().set({ toolsUntilResult: true });
    for (let i = 0; i < 2; i++) {
      await generateText({ model: bareModel(t.server().url, api), prompt, tools, stopWhen: stepCountIs(5) });
    }
    expect(t.server().billed).toBe(4);
    expect(ANSWER).toBe(nth(1));
  });
});

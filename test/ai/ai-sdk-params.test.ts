/**
 * idem/ai-sdk at the language-model boundary, with the AI SDK's own MockLanguageModelV4 as the
 * provider (the store is real SQLite): what the wrapped model receives, and a stream that ends
 * in a provider error before any content is released, not stored.
 */
import { generateText, streamText, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { idemMiddleware } from 'idem/ai-sdk';
import { expect, it } from 'vitest';
import type { StreamPart } from '../../src/ai/ai-sdk/types.ts';
import { aiSdkSetup } from './ai-sdk-setup.ts';

const t = aiSdkSetup();
const usage = {
  inputTokens: { total: 3, noCache: 3, cacheRead: 0, cacheWrite: 0 },
  outputTokens: { total: 2, text: 2, reasoning: 0 },
};

it('the provider gets no providerOptions.idem, the per-step key in the header, and never the caller’s signal', async () => {
  const model = new MockLanguageModelV4({
    doGenerate: {
      content: [{ type: 'text', text: 'hi' }],
      finishReason: { unified: 'stop', raw: 'stop' },
      usage,
      warnings: [],
    },
  });
  const wrapped = wrapLanguageModel({ model, middleware: idemMiddleware({ idem: t.idem() }) });
  const abortSignal = new AbortController().signal;
  await generateText({
    model: wrapped,
    prompt: 'hi',
    abortSignal,
    headers: { 'idempotency-key': 'run-1' },
    providerOptions: { idem: { scope: 'tenant-a' }, other: { x: 1 } },
  });
  const [call] = model.doGenerateCalls;
  expect(call?.providerOptions).toEqual({ other: { x: 1 } });
  expect(call?.headers?.['Idempotency-Key']).toBe('run-1:step-1');
  expect(call?.headers?.['idempotency-key']).toBeUndefined();
  expect(call?.abortSignal).not.toBe(abortSignal);
});

it('a stream that ends in a provider error before any content is released: the retry runs again', async () => {
  let calls = 0;
  const model = new MockLanguageModelV4({
    doStream: async () => {
      calls++;
      const parts: StreamPart[] =
        calls === 1
          ? [
              { type: 'stream-start', warnings: [] },
              { type: 'error', error: new Error('overloaded') },
              { type: 'finish', finishReason: { unified: 'error', raw: 'error' }, usage },
            ]
          : [
              { type: 'stream-start', warnings: [] },
              { type: 'text-start', id: '0' },
              { type: 'text-delta', id: '0', delta: 'hi' },
              { type: 'text-end', id: '0' },
              { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage },
            ];
      return { stream: ReadableStream.from(parts) };
    },
  });
  const wrapped = wrapLanguageModel({
    model,
    middleware: idemMiddleware({ idem: t.idem(), key: 'unbilled' }),
  });
  const errors: unknown[] = [];
  const first = streamText({ model: wrapped, prompt: 'hi', onError: ({ error }) => void errors.push(error) });
  await first.consumeStream();
  expect(errors).toMatchObject([{ message: 'overloaded' }]);
  const again = streamText({ model: wrapped, prompt: 'hi' });
  expect(await again.text).toBe('hi');
  expect((await again.providerMetadata)?.idem).toEqual({ key: 'unbilled:step-1', replayed: false });
  expect(calls).toBe(2);
});

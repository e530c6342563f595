import { withIdem } from 'idem/openai';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { chat, openaiDriver } from './drivers.ts';
import { ANSWER, llmScenarios, storedUsage } from './scenarios.ts';

const t = llmScenarios(openaiDriver);

describe('openai: endpoints', () => {
  const client = () =>
    withIdem(new OpenAI({ apiKey: 'sk-a', baseURL: `${t.server().url}/v1`, maxRetries: 0 }), {
      idem: t.idem(),
    });

  it('the Responses API (plain and streamed), embeddings and images: billed once per key', async () => {
    const c = client();
    for (let i = 0; i < 2; i++) {
      const r = await c.responses.create({ model: 'gpt-test', input: 'hi' }, { idempotencyKey: 'resp' });
      expect(r.output_text).toBe(ANSWER);
      let streamed = '';
      const s = await c.responses.create(
        { model: 'gpt-test', input: 'hi', stream: true },
        { idempotencyKey: 'resp-s' },
      );
      for await (const e of s) if (e.type === 'response.output_text.delta') streamed += e.delta;
      expect(streamed).toBe(ANSWER.replace('#1', '#2'));
      const e = await c.embeddings.create({ model: 'emb', input: 'hi' }, { idempotencyKey: 'emb' });
      expect(e.data[0]?.embedding).toEqual([3, 0.5]);
      const img = await c.images.generate({ model: 'img', prompt: 'a cat' }, { idempotencyKey: 'img' });
      expect(Buffer.from(img.data?.[0]?.b64_json ?? '', 'base64').toString()).toBe('image #4');
    }
    expect(t.server().billed).toBe(4);
  });

  it('GET endpoints pass through untouched (no key, no record)', async () => {
    const c = client();
    await c.models.list();
    await c.models.list();
    expect(t.server().unbilled).toEqual(['GET /v1/models (no key)', 'GET /v1/models (no key)']);
    expect(t.server().requests).toBe(0);
  });

  it('a tool-call answer is replayed whole', async () => {
    t.server().set({ toolCalls: true });
    const c = client();
    const first = await c.chat.completions.create({ ...chat, tools: [] }, { idempotencyKey: 'tools' });
    const again = await c.chat.completions.create({ ...chat, tools: [] }, { idempotencyKey: 'tools' });
    expect(again).toEqual(first);
    expect(first.choices[0]?.message.tool_calls?.[0]).toMatchObject({
      id: 'call_1',
      function: { name: 'lookup' },
    });
    expect(t.server().billed).toBe(1);
  });

  it('the same key with another request: a 422 the SDK does not retry, nothing billed again', async () => {
    const c = client();
    await c.chat.completions.create(chat, { idempotencyKey: 'reused' });
    const error = await c.chat.completions
      .create({ ...chat, model: 'other' }, { idempotencyKey: 'reused', maxRetries: 2 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect(t.server().billed).toBe(1);
  });

  it('the wrapped client keeps the type and options of the original; the original is unchanged', async () => {
    const original = new OpenAI({ apiKey: 'sk-a', baseURL: `${t.server().url}/v1`, maxRetries: 0 });
    const wrapped = withIdem(original, { idem: t.idem() });
    expect(wrapped).toBeInstanceOf(OpenAI);
    expect(wrapped.baseURL).toBe(original.baseURL);
    await original.chat.completions.create(chat);
    expect(t.server().keys).toEqual([null]); // the bare client still sends no key
  });
});

describe('openai: usage kept with the stored outcome', () => {
  it('from a JSON answer and from a stream’s last chunk', async () => {
    const idem = t.idem();
    const c = withIdem(new OpenAI({ apiKey: 'sk-a', baseURL: `${t.server().url}/v1` }), {
      idem,
      scope: 'usage',
    });
    await c.chat.completions.create(chat, { idempotencyKey: 'u-json' });
    const s = await c.chat.completions.create({ ...chat, stream: true }, { idempotencyKey: 'u-sse' });
    for await (const _ of s);
    expect(await storedUsage(idem, 'u-json', 'usage')).toEqual({
      prompt_tokens: 10,
      completion_tokens: 6,
      total_tokens: 16,
    });
    expect(await storedUsage(idem, 'u-sse', 'usage')).toEqual({
      prompt_tokens: 10,
      completion_tokens: 7,
      total_tokens: 17,
    });
  });
});

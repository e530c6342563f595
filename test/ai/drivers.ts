/** The openai and @anthropic-ai/sdk drivers of the shared LLM scenarios. */
import Anthropic from '@anthropic-ai/sdk';
import { withIdem as withIdemAnthropic } from 'idem/anthropic';
import { withIdem as withIdemOpenAI } from 'idem/openai';
import OpenAI from 'openai';
import type { Driver } from './scenarios.ts';

export const chat = {
  model: 'gpt-test',
  messages: [{ role: 'user' as const, content: 'What is the answer?' }],
};
const keyed = (key?: string) => (key === undefined ? {} : { idempotencyKey: key });

export const openaiDriver: Driver<OpenAI> = {
  name: 'openai',
  bare: (baseURL, o) => new OpenAI({ apiKey: o?.apiKey ?? 'sk-tenant-a', baseURL: `${baseURL}/v1`, ...o }),
  wrap: (client, idem) => withIdemOpenAI(client, { idem }),
  async complete(client, key, signal) {
    const { data, response } = await client.chat.completions
      .create(chat, { ...keyed(key), ...(signal && { signal }) })
      .withResponse();
    return {
      text: data.choices[0]?.message.content ?? '',
      replayed: response.headers.get('idempotent-replayed') === 'true',
    };
  },
  async stream(client, key, stopAfter) {
    const stream = await client.chat.completions.create({ ...chat, stream: true }, keyed(key));
    let text = '';
    let events = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (++events === stopAfter) break;
    }
    return text;
  },
  raw: async (client, key) =>
    (await client.chat.completions.create({ ...chat, stream: true }, keyed(key)).asResponse()).text(),
};

export const message = {
  model: 'claude-test',
  max_tokens: 64,
  messages: [{ role: 'user' as const, content: 'What is the answer?' }],
};
/** The documented way to give an Anthropic call its key: the Idempotency-Key header. */
const header = (key?: string) => (key === undefined ? {} : { headers: { 'Idempotency-Key': key } });

export const anthropicDriver: Driver<Anthropic> = {
  name: 'anthropic',
  bare: (baseURL, o) => new Anthropic({ apiKey: o?.apiKey ?? 'sk-tenant-a', baseURL, ...o }),
  wrap: (client, idem) => withIdemAnthropic(client, { idem }),
  async complete(client, key, signal) {
    const { data, response } = await client.messages
      .create(message, { ...header(key), ...(signal && { signal }) })
      .withResponse();
    const block = data.content[0];
    return {
      text: block?.type === 'text' ? block.text : '',
      replayed: response.headers.get('idempotent-replayed') === 'true',
    };
  },
  async stream(client, key, stopAfter) {
    const stream = await client.messages.create({ ...message, stream: true }, header(key));
    let text = '';
    let events = 0;
    for await (const event of stream) {
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
      if (++events === stopAfter) break;
    }
    return text;
  },
  raw: async (client, key) =>
    (await client.messages.create({ ...message, stream: true }, header(key)).asResponse()).text(),
};

/**
 * withIdem (openai, anthropic) options are checked where they enter: an unknown name is refused
 * with "did you mean", a `savings` that is no tracker is refused; a tracker that throws never
 * crashes the process nor holds up the answer; a replayed stream is counted once it is served.
 * idem/ai-sdk exports the savings readers too, and its middleware takes a `savings` tracker.
 */
import Anthropic from '@anthropic-ai/sdk';
import { generateText, wrapLanguageModel } from 'ai';
import { createIdem, InvalidOptionError, memoryStore } from 'idem';
import {
  savingsReport as aiSdkSavingsReport,
  createSavings as createAiSdkSavings,
  idemMiddleware,
} from 'idem/ai-sdk';
import { withIdem as withAnthropic } from 'idem/anthropic';
import { createSavings, withIdem } from 'idem/openai';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bareModel } from './ai-sdk-model.ts';
import { chat } from './drivers.ts';
import { startServer, type TestServer } from './server.ts';

let server: TestServer;
const idem = createIdem({ store: memoryStore() });
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await idem.close();
  await server.close();
});

it('unknown options and a savings that is no tracker are refused at withIdem, for both providers', () => {
  const openai = new OpenAI({ apiKey: 'sk-a', baseURL: `${server.url}/v1` });
  const anthropic = new Anthropic({ apiKey: 'k', baseURL: server.url });
  for (const wrap of [(o: never) => withIdem(openai, o), (o: never) => withAnthropic(anthropic, o)]) {
    expect(() => wrap({ idem, savigns: false } as never)).toThrow(
      /unknown option savigns — did you mean savings\?/,
    );
    for (const savings of [42, {}, null, true, 'x']) {
      expect(() => wrap({ idem, savings } as never)).toThrow(InvalidOptionError);
    }
    expect(() => wrap({ idem, savings: 42 } as never)).toThrow(/savings must be a tracker/);
    expect(() => wrap({ idem, lease: 0 } as never)).toThrow(/lease must be at least/);
    expect(() => wrap({ idem, savings: false } as never)).not.toThrow();
    expect(() => wrap({ idem, savings: createSavings() } as never)).not.toThrow();
  }
  expect(() => withIdem(openai, { idem, fetch: 1 } as never)).toThrow(/fetch must be a function/);
  expect(() => withAnthropic(anthropic, { idem, fetch: globalThis.fetch } as never)).toThrow(
    /unknown option fetch/,
  );
});

it('a savings tracker that throws: the duplicate still gets its answer at once, nothing crashes', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  const savings = {
    ...createSavings(),
    record() {
      throw new Error('tracker broke');
    },
  };
  const a = withAnthropic(new Anthropic({ apiKey: 'k', baseURL: server.url, maxRetries: 0, timeout: 5000 }), {
    idem,
    savings,
  });
  const ask = {
    model: 'claude-haiku-4-5',
    max_tokens: 10,
    messages: [{ role: 'user' as const, content: 'hi' }],
  };
  const first = await a.messages.create(ask, { headers: { 'Idempotency-Key': 'broken-tracker' } });
  const started = Date.now();
  const again = await a.messages.create(ask, { headers: { 'Idempotency-Key': 'broken-tracker' } });
  expect(Date.now() - started).toBeLessThan(2000);
  expect(again.content).toEqual(first.content);
  // a duplicate that shares a call in flight is counted after it settles: no unhandled rejection either
  const o = withIdem(new OpenAI({ apiKey: 'sk-b', baseURL: `${server.url}/v1`, maxRetries: 0 }), {
    idem,
    savings,
  });
  const both = await Promise.all([
    o.chat.completions.create(chat, { idempotencyKey: 'broken-shared' }),
    o.chat.completions.create(chat, { idempotencyKey: 'broken-shared' }),
  ]);
  expect(both[1].choices[0]?.message.content).toBe(both[0].choices[0]?.message.content);
  await new Promise((r) => setTimeout(r, 50));
  process.off('unhandledRejection', onUnhandled);
  expect(unhandled).toEqual([]);
});

it('a replayed stream is counted by the time its last event is read', async () => {
  const savings = createSavings();
  const client = withIdem(new OpenAI({ apiKey: 'sk-c', baseURL: `${server.url}/v1`, maxRetries: 0 }), {
    idem,
    savings,
  });
  const stream = async () => {
    let text = '';
    const body = {
      ...chat,
      model: 'gpt-4o-mini',
      stream: true as const,
      stream_options: { include_usage: true },
    };
    for await (const c of await client.chat.completions.create(body, { idempotencyKey: 'st' }))
      text += c.choices[0]?.delta?.content ?? '';
    return text;
  };
  // the retry comes as soon as the first stream's last event is read: it shares the call in flight
  const first = await stream();
  expect(await stream()).toBe(first);
  expect(savings.report().duplicatesSuppressed).toBe(1);
  expect(savings.report().tokensSaved).toEqual({ input: 10, cached: 0, output: 7 });
  await new Promise((r) => setTimeout(r, 50)); // stored: the next retry is a replay from the store
  expect(await stream()).toBe(first);
  expect(savings.report().duplicatesSuppressed).toBe(2);
});

it('idem/ai-sdk: savingsReport and createSavings are exported; idemMiddleware takes savings (checked, guarded)', async () => {
  expect(typeof aiSdkSavingsReport().duplicatesSuppressed).toBe('number');
  expect(() => idemMiddleware({ idem, savings: 42 } as never)).toThrow(/savings must be a tracker/);
  expect(() => idemMiddleware({ idem, savings: null } as never)).toThrow(InvalidOptionError);
  const savings = createAiSdkSavings();
  const model = wrapLanguageModel({
    model: bareModel(server.url, 'chat'),
    middleware: idemMiddleware({ idem, savings }),
  });
  const ask = { model, prompt: 'hi', providerOptions: { idem: { key: 'sdk-own-tracker' } } };
  const first = await generateText(ask);
  expect((await generateText(ask)).text).toBe(first.text);
  expect(savings.report().byModel['gpt-test']?.duplicatesSuppressed).toBe(1);
  // a tracker that throws: the replay is still answered
  const broken = {
    ...createAiSdkSavings(),
    record: () => {
      throw new Error('tracker broke');
    },
  };
  const other = wrapLanguageModel({
    model: bareModel(server.url, 'chat'),
    middleware: idemMiddleware({ idem, savings: broken }),
  });
  const ask2 = { model: other, prompt: 'hi', providerOptions: { idem: { key: 'sdk-broken-tracker' } } };
  const once = await generateText(ask2);
  expect((await generateText(ask2)).text).toBe(once.text);
});

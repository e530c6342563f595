/**
 * Usage & savings: usage objects of every provider shape normalized to tokens, the dated price
 * table (prefix matching, overrides refused when malformed), the tracker's totals, the
 * in-process wrappers counting suppressed duplicates (real openai SDK, local server), and the
 * OpenTelemetry export through @opentelemetry/api's global MeterProvider.
 */
import { metrics } from '@opentelemetry/api';
import { generateText, wrapLanguageModel } from 'ai';
import { createIdem, memoryStore } from 'idem';
import { idemMiddleware } from 'idem/ai-sdk';
import { createSavings, savingsReport, withIdem } from 'idem/openai';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  costOf,
  DEFAULT_PRICES,
  PRICES_AS_OF,
  priceOf,
  resolvePrices,
  tokensOf,
} from '../../src/ai/prices.ts';
import { exportToOpenTelemetry } from '../../src/ai/savings.ts';
import { InvalidOptionError } from '../../src/core/errors.ts';
import { bareModel } from './ai-sdk-model.ts';
import { chat } from './drivers.ts';
import { startServer, type TestServer } from './server.ts';

describe('tokens and prices', () => {
  it('normalizes OpenAI chat, Responses and Anthropic usage (cached apart from input)', () => {
    expect(
      tokensOf({ prompt_tokens: 10, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 4 } }),
    ).toEqual({ input: 6, cached: 4, output: 5 });
    expect(
      tokensOf({ input_tokens: 20, output_tokens: 7, input_tokens_details: { cached_tokens: 20 } }),
    ).toEqual({ input: 0, cached: 20, output: 7 });
    expect(
      tokensOf({
        input_tokens: 3,
        cache_creation_input_tokens: 2,
        cache_read_input_tokens: 100,
        output_tokens: 9,
      }),
    ).toEqual({ input: 5, cached: 100, output: 9 });
    expect(
      tokensOf({
        inputTokens: { total: 12, noCache: 4, cacheRead: 8, cacheWrite: undefined },
        outputTokens: { total: 5, text: 5, reasoning: undefined },
      }),
    ).toEqual({ input: 4, cached: 8, output: 5 });
    expect(tokensOf({ inputTokens: 10, outputTokens: 3, cachedInputTokens: 2 })).toEqual({
      input: 8,
      cached: 2,
      output: 3,
    });
    expect(tokensOf(undefined)).toEqual({ input: 0, cached: 0, output: 0 });
    expect(tokensOf({ prompt_tokens: 'x', completion_tokens: -1 })).toEqual({
      input: 0,
      cached: 0,
      output: 0,
    });
  });

  it('finds a model by exact name or by the longest listed prefix; unknown models have no price', () => {
    expect(priceOf('gpt-4o-mini-2024-07-18')).toEqual(DEFAULT_PRICES['gpt-4o-mini']);
    expect(priceOf('gpt-4o-2024-08-06')).toEqual(DEFAULT_PRICES['gpt-4o']);
    expect(priceOf('claude-sonnet-4-5-20250929')).toEqual(DEFAULT_PRICES['claude-sonnet-4-5']);
    expect(priceOf('gpt-4o')).toEqual(DEFAULT_PRICES['gpt-4o']);
    expect(priceOf('gpt-4omni')).toBeUndefined();
    expect(priceOf('my-model')).toBeUndefined();
    expect(PRICES_AS_OF).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  });

  it('costs input, cached input and output at their own prices', () => {
    expect(
      costOf(
        { input: 1_000_000, cached: 1_000_000, output: 1_000_000 },
        { input: 2, output: 10, cachedInput: 0.5 },
      ),
    ).toBe(12.5);
    expect(costOf({ input: 0, cached: 1_000_000, output: 0 }, { input: 2, output: 10 })).toBe(2);
  });

  it('overrides extend the defaults; a malformed price is refused with the model named', () => {
    const table = resolvePrices({ 'my-model': { input: 1, output: 2 } });
    expect(table['my-model']).toEqual({ input: 1, output: 2 });
    expect(table['gpt-4o']).toEqual(DEFAULT_PRICES['gpt-4o']);
    expect(() => resolvePrices({ 'my-model': { input: '1', output: 2 } })).toThrow(InvalidOptionError);
    expect(() => resolvePrices({ m: { input: 1, output: 2, cached: 1 } })).toThrow(/prices\["m"\]/);
    expect(() => resolvePrices([])).toThrow(InvalidOptionError);
  });
});

describe('the savings tracker', () => {
  it('adds up duplicates, tokens and cost by model; unpriced models count tokens only; keys are bounded', () => {
    const savings = createSavings({ maxKeys: 2, prices: { 'gpt-test': { input: 2, output: 10 } } });
    const usage = { prompt_tokens: 10, completion_tokens: 6 };
    savings.record({ provider: 'openai', id: 'a', model: 'gpt-test', usage });
    savings.record({ provider: 'openai', id: 'a', model: 'gpt-test', usage });
    savings.record({ provider: 'openai', id: 'b', model: 'nobody-knows', usage });
    savings.record({ provider: 'anthropic', id: 'c', usage: { input_tokens: 1, output_tokens: 1 } });
    const report = savings.report();
    expect(report).toMatchObject({
      duplicatesSuppressed: 4,
      unpriced: 2,
      tokensSaved: { input: 31, cached: 0, output: 19 },
    });
    expect(report.costSavedUsd).toBeCloseTo((2 * (10 * 2 + 6 * 10)) / 1e6, 12);
    expect(report.byModel['gpt-test']).toMatchObject({ duplicatesSuppressed: 2 });
    expect(report.keys.map((k) => [k.id, k.duplicates])).toEqual([
      ['c', 1],
      ['b', 1],
    ]);
  });
});

describe('in-process wrappers count what they suppress', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.close());

  it('withIdem(openai): a replay and a shared in-flight duplicate are counted with the original usage', async () => {
    server.set({ delayMs: 100 });
    const savings = createSavings();
    const idem = createIdem({ store: memoryStore() });
    const client = withIdem(new OpenAI({ apiKey: 'sk-a', baseURL: `${server.url}/v1` }), { idem, savings });
    const body = { ...chat, model: 'gpt-4o-mini' };
    await Promise.all([
      client.chat.completions.create(body, { idempotencyKey: 'k' }),
      client.chat.completions.create(body, { idempotencyKey: 'k' }),
    ]);
    await client.chat.completions.create(body, { idempotencyKey: 'k' });
    await new Promise((r) => setTimeout(r, 50));
    const report = savings.report();
    expect(server.billed).toBe(1);
    expect(report.duplicatesSuppressed).toBe(2);
    expect(report.tokensSaved).toEqual({ input: 20, cached: 0, output: 12 });
    expect(report.costSavedUsd).toBeCloseTo((20 * 0.15 + 12 * 0.6) / 1e6, 12);
    await idem.close();
  });

  it('without its own tracker a wrapper counts into the process report (savingsReport)', async () => {
    const before = savingsReport().duplicatesSuppressed;
    const idem = createIdem({ store: memoryStore() });
    const client = withIdem(new OpenAI({ apiKey: 'sk-a', baseURL: `${server.url}/v1` }), { idem });
    await client.chat.completions.create(chat, { idempotencyKey: 'p' });
    await client.chat.completions.create(chat, { idempotencyKey: 'p' });
    expect(savingsReport().duplicatesSuppressed).toBe(before + 1);
    await idem.close();
  });
});

describe('idem/ai-sdk counts what it suppresses', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(() => server.close());

  it('a replayed generateText step is counted in the process report with the model and its usage', async () => {
    const idem = createIdem({ store: memoryStore() });
    const model = wrapLanguageModel({
      model: bareModel(server.url, 'chat'),
      middleware: idemMiddleware({ idem }),
    });
    const before = savingsReport().byModel['gpt-test']?.duplicatesSuppressed ?? 0;
    const ask = { model, prompt: 'hi', providerOptions: { idem: { key: 'sdk-savings' } } };
    await generateText(ask);
    await generateText(ask);
    expect(server.billed).toBe(1);
    const after = savingsReport();
    expect(after.byModel['gpt-test']?.duplicatesSuppressed).toBe(before + 1);
    expect(after.keys[0]).toMatchObject({ provider: 'openai.chat', model: 'gpt-test', duplicates: 1 });
    expect(after.keys[0]?.id).not.toContain('sdk-savings'); // the record id, never the raw key
    await idem.close();
  });
});

describe('OpenTelemetry export', () => {
  it('adds to counters of the global MeterProvider registered through @opentelemetry/api', async () => {
    const added: [string, number, Record<string, string> | undefined][] = [];
    const meter = {
      createCounter: (name: string) => ({
        add: (value: number, attributes?: Record<string, string>) => added.push([name, value, attributes]),
      }),
    };
    metrics.setGlobalMeterProvider({ getMeter: () => meter } as never);
    try {
      const savings = createSavings();
      exportToOpenTelemetry(savings);
      savings.record({
        provider: 'openai',
        id: 'x',
        model: 'gpt-4o',
        usage: { prompt_tokens: 1_000_000, completion_tokens: 0 },
      });
      await new Promise((r) => setTimeout(r, 20));
      expect(added).toEqual([
        ['idem.llm.duplicate_calls_suppressed', 1, { provider: 'openai', model: 'gpt-4o' }],
        ['idem.llm.tokens_saved', 1_000_000, { provider: 'openai', model: 'gpt-4o', kind: 'input' }],
        ['idem.llm.cost_saved_usd', 2.5, { provider: 'openai', model: 'gpt-4o' }],
      ]);
    } finally {
      metrics.disable();
    }
  });
});

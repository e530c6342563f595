/**
 * The gateway's LLM presets with the real SDKs (`openai`, `@anthropic-ai/sdk`, `ai` +
 * `@ai-sdk/openai`) pointed at `idem serve --preset …` in front of the local provider server:
 * billed == logical and the right answer under SDK retries after a timeout, a provider 500 then
 * success, streams interrupted by the client or cut by the upstream, a tool loop under one key,
 * two tenants with one key, 102 duplicates from 3 client processes (one gateway) and through 3
 * `idem serve --preset openai` processes on one Redis store; streams replay
 * byte-identical; the savings counters move in /metrics and GET /savings.
 */
import { spawn } from 'node:child_process';
import Anthropic from '@anthropic-ai/sdk';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createGateway, type Gateway, type SavingsReport } from '../../src/gateway/index.ts';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { bareModel } from './ai-sdk-model.ts';
import { chat, message } from './drivers.ts';
import { ANSWER } from './scenarios.ts';
import { startServer, type TestServer } from './server.ts';

const CHILD = new URL('./fixtures/gateway-child.ts', import.meta.url).pathname;
const BIN = new URL('../../bin/idem.js', import.meta.url).pathname;
const redisUp = await serviceAvailable('redis');
const nth = (n: number) => ANSWER.replace('#1', `#${n}`);
const quiet = { warn() {}, error() {} };

let server: TestServer;
let openaiGw: Gateway;
let anthropicGw: Gateway;
let oaUrl: string;
let anUrl: string;

beforeAll(async () => {
  server = await startServer();
  openaiGw = await createGateway({
    preset: 'openai',
    upstream: server.url,
    store: 'memory',
    purgeEvery: false,
    logger: quiet,
    prices: { 'gpt-test': { input: 2, output: 10 } },
  });
  anthropicGw = await createGateway({
    preset: 'anthropic',
    upstream: server.url,
    store: 'memory',
    purgeEvery: false,
    logger: quiet,
  });
  [oaUrl, anUrl] = await Promise.all([openaiGw.listen(0), anthropicGw.listen(0)]);
});
afterAll(async () => {
  for (const gw of [openaiGw, anthropicGw]) gw.server.closeAllConnections();
  await Promise.all([openaiGw.close(), anthropicGw.close()]);
  await server.close();
});
beforeEach(() => server.reset());

/** One client process of gateway-child.ts; resolves with what each of its calls got. */
const run = (args: object) =>
  new Promise<{ text: string; replayed: boolean }[]>((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=idem-source', CHILD, JSON.stringify(args)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code}`)),
    );
  });

let n = 0;
const uniq = (label: string) => `${label}-${++n}-${Math.random().toString(36).slice(2, 8)}`;

/** An openai client through the gateway that mints one key per logical call (kept across its retries). */
function openai(options: { apiKey?: string; timeout?: number; maxRetries?: number } = {}) {
  const client = new OpenAI({
    apiKey: 'sk-a',
    baseURL: `${oaUrl}/v1`,
    timeout: 1000,
    maxRetries: 2,
    ...options,
  });
  // the SDK's own switch (protected in its types): one key per logical call, kept across its retries
  (client as unknown as { idempotencyHeader: string }).idempotencyHeader = 'Idempotency-Key';
  return client;
}
function anthropic(options: { apiKey?: string; timeout?: number; maxRetries?: number } = {}) {
  return new Anthropic({ apiKey: 'sk-a', baseURL: anUrl, timeout: 1000, maxRetries: 2, ...options });
}
const keyed = (key: string) => ({ headers: { 'Idempotency-Key': key } });

async function openaiStream(client: OpenAI, key: string, stopAfter?: number): Promise<string> {
  const stream = await client.chat.completions.create({ ...chat, stream: true }, { idempotencyKey: key });
  let text = '';
  let events = 0;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? '';
    if (++events === stopAfter) break;
  }
  return text;
}
async function anthropicStream(client: Anthropic, key: string, stopAfter?: number): Promise<string> {
  const stream = await client.messages.create({ ...message, stream: true }, keyed(key));
  let text = '';
  let events = 0;
  for await (const event of stream) {
    if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
    if (++events === stopAfter) break;
  }
  return text;
}

describe('gateway preset: SDK retries after a timeout', () => {
  it('openai: a call slower than the SDK timeout is billed once; the SDK retry gets its answer', async () => {
    server.set({ delayMs: 1300 });
    const started = Date.now();
    const { data, response } = await openai().chat.completions.create(chat).withResponse();
    expect(data.choices[0]?.message.content).toBe(ANSWER);
    expect(response.headers.get('idempotent-replayed')).toBe('true');
    expect(Date.now() - started).toBeLessThan(1300 + 2500);
    expect([server.requests, server.billed]).toEqual([1, 1]);
  });

  it('anthropic: the same with the key in a header', async () => {
    server.set({ delayMs: 1300 });
    const started = Date.now();
    const answer = await anthropic().messages.create(message, keyed(uniq('slow')));
    expect(answer.content[0]).toMatchObject({ type: 'text', text: ANSWER });
    expect(Date.now() - started).toBeLessThan(1300 + 2500);
    expect([server.requests, server.billed]).toEqual([1, 1]);
  });

  it('ai: an aborted call keeps running upstream; the app retry with its key gets the one answer', async () => {
    server.set({ delayMs: 800 });
    const model = bareModel(oaUrl, 'chat', 'sk-a');
    const key = uniq('ai-abort');
    const first = generateText({ model, prompt: 'hi', ...keyed(key), abortSignal: AbortSignal.timeout(200) });
    await expect(first).rejects.toThrow();
    const again = await generateText({ model, prompt: 'hi', ...keyed(key) });
    expect(again.text).toBe(ANSWER);
    expect(server.billed).toBe(1);
  });
});

describe('gateway preset: a provider failure, then success', () => {
  it('openai: 500 twice, then the SDK retry (same minted key) succeeds: billed once, not stored as 500', async () => {
    server.set({ fail: { count: 2, status: 500 } });
    const answer = await openai().chat.completions.create(chat);
    expect(answer.choices[0]?.message.content).toBe(ANSWER);
    expect([server.requests, server.billed]).toEqual([3, 1]);
    expect(new Set(server.keys).size).toBe(1);
  });

  it('anthropic: 529 overloaded, then success', async () => {
    server.set({ fail: { count: 1, status: 529 } });
    const answer = await anthropic().messages.create(message, keyed(uniq('529')));
    expect(answer.content[0]).toMatchObject({ text: ANSWER });
    expect([server.requests, server.billed]).toEqual([2, 1]);
  });

  it('anthropic: a stream that fails with overloaded_error before any content is released, not stored', async () => {
    server.set({ overloadedStreams: 1 });
    const c = anthropic({ maxRetries: 0 });
    const key = uniq('overloaded');
    const released = () =>
      anthropicGw.metrics.registry
        .getSingleMetric('idem_releases_total')!
        .get()
        .then((m) => m.values.reduce((n, v) => n + v.value, 0));
    const before = await released();
    await expect(anthropicStream(c, key)).rejects.toThrow(/overloaded/i);
    // the SDK throws at the error event; the gateway releases the key a moment later
    for (let i = 0; i < 100 && (await released()) === before; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await anthropicStream(c, key)).toBe(ANSWER); // the server bills only the second
    expect([server.requests, server.billed]).toEqual([2, 1]);
  });
});

describe('gateway preset: streams', () => {
  it.each(['openai', 'anthropic'])(
    '%s: a stream the client stops reading keeps recording; the retry gets it whole, raw bytes identical',
    async (sdk) => {
      server.set({ eventGapMs: 30 });
      const key = uniq('interrupted');
      const read =
        sdk === 'openai' ? openaiStream.bind(null, openai()) : anthropicStream.bind(null, anthropic());
      const part = await read(key, 2);
      expect(ANSWER.startsWith(part) && part.length < ANSWER.length).toBe(true);
      expect(await read(key)).toBe(ANSWER);
      const raw = async () =>
        sdk === 'openai'
          ? (
              await openai()
                .chat.completions.create({ ...chat, stream: true }, { idempotencyKey: key })
                .asResponse()
            ).text()
          : (
              await anthropic()
                .messages.create({ ...message, stream: true }, keyed(key))
                .asResponse()
            ).text();
      const [a, b] = [await raw(), await raw()];
      expect(a).toBe(b);
      expect(a).toContain('forty');
      expect(server.billed).toBe(1);
    },
  );

  it.each([
    ['openai', false],
    ['openai', true],
    ['anthropic', true],
  ])(
    '%s: a stream cut by the upstream (clean close: %s) is an error, stored as indeterminate, never billed again',
    async (sdk, cleanCut) => {
      server.set({ cutAfterEvents: 3, cleanCut });
      const key = uniq('cut');
      const read =
        sdk === 'openai' ? openaiStream.bind(null, openai()) : anthropicStream.bind(null, anthropic());
      await expect(read(key)).rejects.toThrow();
      const again = await read(key).catch((e: unknown) => e);
      expect(again).toMatchObject({ status: 502 });
      expect(server.billed).toBe(1);
      server.set({ cutAfterEvents: undefined });
      expect(await read(`${key}:retry:1`)).toBe(nth(2));
    },
  );

  it('ai: a key whose stream was cut answers 502 at once; retry-after-ms: 0 lets the AI SDK give up in ms, not 6 s', async () => {
    server.set({ cutAfterEvents: 3, cleanCut: true });
    const model = bareModel(oaUrl, 'chat', 'sk-a');
    const key = uniq('ai-cut');
    const attempt = async () => {
      const errors: unknown[] = [];
      const result = streamText({
        model,
        prompt: 'hi',
        ...keyed(key),
        onError: ({ error }) => void errors.push(error),
      });
      try {
        for await (const _ of result.fullStream);
      } catch (error) {
        errors.push(error);
      }
      return errors;
    };
    expect((await attempt()).length).toBeGreaterThan(0);
    const started = Date.now();
    const again = await attempt();
    expect(Date.now() - started).toBeLessThan(1500);
    expect(
      JSON.stringify(
        again.map(
          (e) =>
            (e as { statusCode?: number; lastError?: { statusCode?: number } }).lastError?.statusCode ??
            (e as { statusCode?: number }).statusCode,
        ),
      ),
    ).toContain('502');
    expect(server.billed).toBe(1);
  });

  it('ai: streamText through the gateway replays the same text without a second bill', async () => {
    const model = bareModel(oaUrl, 'responses', 'sk-a');
    const key = uniq('ai-stream');
    const once = async () => {
      const result = streamText({ model, prompt: 'hi', ...keyed(key) });
      let text = '';
      for await (const delta of result.textStream) text += delta;
      return text;
    };
    expect(await once()).toBe(ANSWER);
    expect(await once()).toBe(ANSWER);
    expect(server.billed).toBe(1);
  });
});

describe('gateway preset: a two-step tool loop under one key (ai)', () => {
  it.each(['chat', 'responses'] as const)(
    '%s: each step is its own record; running the loop again bills nothing',
    async (api) => {
      server.set({ toolsUntilResult: true });
      let executions = 0;
      const tools = {
        lookup: tool({
          description: 'Looks the answer up',
          inputSchema: z.object({ q: z.string() }),
          execute: async ({ q }) => {
            executions++;
            return `the answer to ${q}`;
          },
        }),
      };
      const key = uniq('loop');
      const loop = () =>
        generateText({
          model: bareModel(oaUrl, api, 'sk-a'),
          prompt: 'Look it up',
          tools,
          stopWhen: stepCountIs(5),
          ...keyed(key),
        });
      const first = await loop();
      expect(first.text).toBe(nth(2));
      expect(first.steps).toHaveLength(2);
      const again = await loop();
      expect(again.text).toBe(nth(2));
      expect(server.billed).toBe(2);
      expect(executions).toBe(2); // tools are the app's: they run again (see idempotentTool)
    },
  );
});

describe('gateway preset: tenants and keys', () => {
  it('two API keys with the same idempotency key never share a record', async () => {
    const key = uniq('tenant');
    const a = await openai({ apiKey: 'sk-tenant-a' }).chat.completions.create(chat, { idempotencyKey: key });
    const b = await openai({ apiKey: 'sk-tenant-b' }).chat.completions.create(chat, { idempotencyKey: key });
    expect(a.choices[0]?.message.content).toBe(ANSWER);
    expect(b.choices[0]?.message.content).toBe(nth(2));
    expect(server.billed).toBe(2);
  });

  it('a call without a key is refused (400 missing-key), one without credentials gets 401; reads pass through', async () => {
    const bare = new OpenAI({ apiKey: 'sk-a', baseURL: `${oaUrl}/v1`, maxRetries: 0 });
    await expect(bare.chat.completions.create(chat)).rejects.toMatchObject({ status: 400 });
    const res = await fetch(`${oaUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k' },
      body: JSON.stringify(chat),
    });
    expect(res.status).toBe(401);
    await bare.models.list();
    expect(server.unbilled).toEqual(['GET /v1/models (no key)']);
    expect(server.requests).toBe(0);
  });

  it('the fingerprint leaves out user, metadata and stream_options; a changed message is a 422', async () => {
    const c = openai({ maxRetries: 0 });
    const key = uniq('fp');
    await c.chat.completions.create(
      { ...chat, user: 'u1', metadata: { trace: 'a' } },
      { idempotencyKey: key },
    );
    const same = await c.chat.completions
      .create({ ...chat, user: 'u2', metadata: { trace: 'b' } }, { idempotencyKey: key })
      .withResponse();
    expect(same.response.headers.get('idempotent-replayed')).toBe('true');
    const other = { ...chat, messages: [{ role: 'user' as const, content: 'Something else' }] };
    await expect(c.chat.completions.create(other, { idempotencyKey: key })).rejects.toMatchObject({
      status: 422,
    });
    expect(server.billed).toBe(1);
  });
});

describe('gateway preset: savings', () => {
  it('suppressed duplicates move the /metrics counters and GET /savings', async () => {
    const key = uniq('savings');
    const c = openai();
    for (let i = 0; i < 3; i++)
      await c.chat.completions.create({ ...chat, model: 'gpt-test' }, { idempotencyKey: key });
    expect(server.billed).toBe(1);
    const metrics = await (await fetch(`${oaUrl}/metrics`)).text();
    const value = (pattern: RegExp) => Number(metrics.match(pattern)?.[1] ?? Number.NaN);
    expect(
      value(/idem_llm_duplicate_calls_suppressed_total\{provider="openai",model="gpt-test"\} (\d+)/),
    ).toBeGreaterThanOrEqual(2);
    expect(
      value(/idem_llm_tokens_saved_total\{provider="openai",model="gpt-test",kind="input"\} (\d+)/),
    ).toBeGreaterThanOrEqual(20);
    expect(
      value(/idem_llm_tokens_saved_total\{provider="openai",model="gpt-test",kind="output"\} (\d+)/),
    ).toBeGreaterThanOrEqual(12);
    expect(
      value(/idem_llm_cost_saved_usd_total\{provider="openai",model="gpt-test"\} ([\d.e-]+)/),
    ).toBeGreaterThan(0);
    const report = (await (await fetch(`${oaUrl}/savings`)).json()) as SavingsReport;
    const entry = report.keys.find(
      (k: { duplicates: number; usage: unknown }) => k.duplicates === 2 && k.usage,
    );
    expect(entry).toMatchObject({
      provider: 'openai',
      model: 'gpt-test',
      usage: { prompt_tokens: 10, completion_tokens: 6 },
    });
    expect(report.byModel['gpt-test']?.duplicatesSuppressed).toBeGreaterThanOrEqual(2);
    // 2 duplicates × (10 input × $2 + 6 output × $10) per million tokens, at least
    expect(report.costSavedUsd).toBeGreaterThanOrEqual((2 * (10 * 2 + 6 * 10)) / 1e6 - 1e-12);
    expect(typeof report.pricesAsOf).toBe('string');
  });
});

describe('gateway preset: 102 duplicates from 3 client processes on one gateway', () => {
  it.each(['openai', 'anthropic', 'ai'])('%s: billed once, every caller gets the one answer', async (sdk) => {
    server.set({ delayMs: 400 });
    const args = {
      sdk,
      gateway: sdk === 'anthropic' ? anUrl : oaUrl,
      key: uniq('proc'),
      count: 34,
      startAt: Date.now() + 2000,
    };
    const results = (await Promise.all([run(args), run(args), run(args)])).flat();
    expect(results).toHaveLength(102);
    expect(new Set(results.map((r) => r.text))).toEqual(new Set([ANSWER]));
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(server.billed).toBe(1);
  });
});

describe('gateway preset: 3 gateway processes on one Redis store', () => {
  /** `idem serve --preset openai` as a user runs it; resolves with its URL once it listens. */
  async function serve(store: string) {
    const child = spawn(
      process.execPath,
      [BIN, 'serve', '--preset', 'openai', '--upstream', server.url, '--store', store, '--port', '0'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d;
        const m = /idem gateway (http:\/\/[\d.:]+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once('exit', (code) => reject(new Error(`idem serve exited ${code}`)));
    });
    return { url, stop: () => child.kill('SIGTERM') };
  }

  it.skipIf(!redisUp)(
    '102 duplicates, 34 through each gateway: billed once; the savings of all three add up to 101',
    async () => {
      server.set({ delayMs: 400 });
      const prefix = uniqueName('idem_gwp');
      const store = `${SERVICES.redis}?prefix=${prefix}`;
      const gateways = await Promise.all([serve(store), serve(store), serve(store)]);
      try {
        const key = uniq('fleet');
        const startAt = Date.now() + 2000;
        const results = (
          await Promise.all(
            gateways.map((g) => run({ sdk: 'openai', gateway: g.url, key, count: 34, startAt })),
          )
        ).flat();
        expect(results).toHaveLength(102);
        expect(new Set(results.map((r) => r.text))).toEqual(new Set([ANSWER]));
        expect(results.filter((r) => !r.replayed)).toHaveLength(1);
        expect(server.billed).toBe(1);
        const suppressed = await Promise.all(
          gateways.map(async (g) => {
            const report = (await (await fetch(`${g.url}/savings`)).json()) as SavingsReport;
            return report.duplicatesSuppressed;
          }),
        );
        expect(suppressed.reduce((a, b) => a + b, 0)).toBe(101);
      } finally {
        for (const g of gateways) g.stop();
        const redis = new Redis(SERVICES.redis);
        const left = await redis.keys(`${prefix}*`);
        if (left.length > 0) await redis.del(...left);
        await redis.quit();
      }
    },
  );
});

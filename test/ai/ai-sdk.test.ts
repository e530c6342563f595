/**
 * idem/ai-sdk with the real `ai` and `@ai-sdk/openai` against the local server (SQLite store):
 * billed == logical for generateText and streamText, on chat completions and the Responses API.
 */
import { APICallError, generateText, streamText } from 'ai';
import { FingerprintMismatchError, InvalidKeyError, StoreUnavailableError } from 'idem';
import { isIndeterminateOutcomeError } from 'idem/ai-sdk';
import { describe, expect, it } from 'vitest';
import { ANSWER, type Api, aiSdkSetup, keyed, nth } from './ai-sdk-setup.ts';

const t = aiSdkSetup();
const prompt = 'What is the answer?';
const failed = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e,
  );

describe.each<Api>(['chat', 'responses'])('%s model through idemMiddleware', (api) => {
  const generate = (key: string, extra: object = {}) =>
    generateText({ model: t.model(api), prompt, ...keyed(key), ...extra });
  const stream = async (key: string, extra: object = {}) => {
    const r = streamText({ model: t.model(api), prompt, ...keyed(key), onError: () => {}, ...extra });
    return {
      text: await r.text,
      idem: (await r.providerMetadata)?.idem,
      headers: (await r.response).headers,
    };
  };

  it('generateText twice with one key: billed once, the second marked as a replay', async () => {
    const first = await generate('g-dup');
    const again = await generate('g-dup');
    expect([first.text, again.text]).toEqual([ANSWER, ANSWER]);
    expect(first.providerMetadata?.idem).toEqual({ key: 'g-dup:step-1', replayed: false });
    expect(again.providerMetadata?.idem).toEqual({ key: 'g-dup:step-1', replayed: true });
    expect(again.response.headers?.['idempotent-replayed']).toBe('true');
    expect(again.usage).toEqual(first.usage);
    expect(again.finishReason).toBe(first.finishReason);
    expect(again.response.id).toBe(first.response.id);
    expect(t.server().billed).toBe(1);
  });

  it('streamText twice with one key: billed once, replayed from the start', async () => {
    const first = await stream('s-dup');
    const again = await stream('s-dup');
    expect([first.text, again.text]).toEqual([ANSWER, ANSWER]);
    expect(again.idem).toEqual({ key: 's-dup:step-1', replayed: true });
    expect(again.headers?.['idempotent-replayed']).toBe('true');
    expect(t.server().billed).toBe(1);
  });

  it('5 concurrent duplicates (generateText and streamText): billed once each, 4 replays', async () => {
    t.server().set({ delayMs: 200 });
    const g = await Promise.all(Array.from({ length: 5 }, () => generate('g-5')));
    const s = await Promise.all(Array.from({ length: 5 }, () => stream('s-5')));
    expect(new Set(g.map((r) => r.text))).toEqual(new Set([ANSWER]));
    expect(new Set(s.map((r) => r.text))).toEqual(new Set([nth(2)]));
    expect(g.filter((r) => r.providerMetadata?.idem?.replayed)).toHaveLength(4);
    expect(s.filter((r) => r.idem?.replayed)).toHaveLength(4);
    expect(t.server().billed).toBe(2);
  });

  it.each([429, 500, 503])(
    'the first 2 calls answer %d, then the AI SDK retry succeeds: billed once, every attempt under one key',
    async (status) => {
      t.server().set({ fail: { count: 2, status } });
      const headers = { 'Idempotency-Key': 'g-retry' }; // forwarded per call, so the server sees it
      const g = await generateText({ model: t.model(api), prompt, headers });
      expect(g.text).toBe(ANSWER);
      expect(t.server().keys).toEqual(['g-retry:step-1', 'g-retry:step-1', 'g-retry:step-1']);
      t.server().set({ fail: { count: 2, status } });
      expect((await stream('s-retry')).text).toBe(nth(2));
      expect(t.server().requests).toBe(6);
      expect(t.server().billed).toBe(2);
    },
  );

  it('a replayed stream has the same parts as the live one (text, tool calls, finish reason, usage)', async () => {
    const parts = async () => {
      const r = streamText({ model: t.model(api), prompt, ...keyed('parts'), onError: () => {} });
      const seen: unknown[] = [];
      for await (const p of r.fullStream) {
        if (p.type === 'text-delta') seen.push([p.type, p.text]);
        if (p.type === 'finish-step') seen.push([p.type, p.finishReason, p.usage, p.response.id]);
      }
      return seen;
    };
    const live = await parts();
    expect(await parts()).toEqual(live);
    expect(live.length).toBeGreaterThan(7);
    expect(t.server().billed).toBe(1);
  });

  it('a definitive answer (400, 501) is stored and raised again, never retried by the AI SDK', async () => {
    for (const status of [400, 501]) {
      t.server().set({ fail: { count: 1, status } });
      const started = Date.now();
      const first = await failed(generate(`definitive-${status}`));
      const again = await failed(generate(`definitive-${status}`));
      expect(Date.now() - started).toBeLessThan(1500); // no 2 s + 4 s backoff
      for (const e of [first, again]) {
        expect(APICallError.isInstance(e)).toBe(true);
        expect(e).toMatchObject({ statusCode: status, isRetryable: false });
      }
      expect((again as APICallError).responseHeaders?.['idempotent-replayed']).toBe('true');
    }
    expect(t.server().requests).toBe(2);
  });

  it('the same key with another prompt: FingerprintMismatchError (422), not retried, nothing sent', async () => {
    await generate('reused');
    const error = await failed(generateText({ model: t.model(api), prompt: 'Other?', ...keyed('reused') }));
    expect(error).toBeInstanceOf(FingerprintMismatchError);
    expect(error).toMatchObject({ status: 422 });
    expect(t.server().requests).toBe(1);
  });

  it('a call the app times out keeps running; the retry with the key gets its answer', async () => {
    t.server().set({ delayMs: 800 });
    const timedOut = await failed(generate('slow', { timeout: 200 }));
    expect(timedOut).toBeInstanceOf(Error);
    const started = Date.now();
    const again = await generate('slow');
    expect(again.text).toBe(ANSWER);
    expect(again.providerMetadata?.idem?.replayed).toBe(true);
    expect(Date.now() - started).toBeLessThan(800);
    expect(t.server().billed).toBe(1);
  });

  it('a stream the app aborts keeps recording; the retry with the key gets it whole', async () => {
    t.server().set({ eventGapMs: 40 });
    const controller = new AbortController();
    const r = streamText({
      model: t.model(api),
      prompt,
      ...keyed('aborted'),
      abortSignal: controller.signal,
      onError: () => {},
    });
    let part = '';
    for await (const delta of r.textStream) {
      part += delta;
      if (part.length > 3) controller.abort();
    }
    expect(ANSWER.startsWith(part) && part.length < ANSWER.length).toBe(true);
    expect((await stream('aborted')).text).toBe(ANSWER); // follows the recording live
    expect((await stream('aborted')).text).toBe(ANSWER); // from the store
    expect(t.server().billed).toBe(1);
  });

  it.each([
    ['reset', false],
    ['closed before its last event', true],
  ])(
    'a stream cut by the upstream (%s): IndeterminateOutcomeError, stored as cut, not billed again',
    async (_, cleanCut) => {
      t.server().set({ cutAfterEvents: 3, cleanCut });
      const first = await failed(stream('cut'));
      const again = await failed(stream('cut'));
      expect(isIndeterminateOutcomeError(first)).toBe(true);
      expect(isIndeterminateOutcomeError(again)).toBe(true);
      expect(t.server().billed).toBe(1);
      if (!isIndeterminateOutcomeError(again)) throw again;
      t.server().set({ cutAfterEvents: undefined });
      // the escape hatch: a new key, derived from the cut call's, billed again knowingly
      const retry = await stream(again.retryWithNewKey().idempotencyKey);
      expect(retry.text).toBe(nth(2));
      expect(t.server().billed).toBe(2);
    },
  );

  it('no key: InvalidKeyError before anything is sent; a key over 255 characters too', async () => {
    expect(await failed(generateText({ model: t.model(api), prompt }))).toBeInstanceOf(InvalidKeyError);
    expect(await failed(generate('k'.repeat(250)))).toBeInstanceOf(InvalidKeyError);
    expect(t.server().requests).toBe(0);
  });

  it('the store is down: StoreUnavailableError, nothing sent upstream', async () => {
    const model = t.model(api);
    await t.idem().close();
    const error = await failed(generateText({ model, prompt, ...keyed('down'), maxRetries: 0 }));
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(t.server().requests).toBe(0);
  });

  it('two tenants (scopes) with the same key never share an answer', async () => {
    const a = await generateText({ model: t.model(api), prompt, ...keyed('same', 'tenant-a') });
    const b = await generateText({ model: t.model(api), prompt, ...keyed('same', 'tenant-b') });
    expect([a.text, b.text]).toEqual([ANSWER, nth(2)]);
    expect(t.server().billed).toBe(2);
  });
});

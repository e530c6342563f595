import Anthropic from '@anthropic-ai/sdk';
import { idemMiddleware, withIdem } from 'idem/anthropic';
import { describe, expect, it } from 'vitest';
import { anthropicDriver, message } from './drivers.ts';
import { ANSWER, llmScenarios, storedUsage } from './scenarios.ts';

const t = llmScenarios(anthropicDriver);

describe('anthropic: messages', () => {
  const client = () =>
    withIdem(new Anthropic({ apiKey: 'sk-a', baseURL: t.server().url, maxRetries: 0 }), { idem: t.idem() });

  it('a streamed tool use is recorded whole and replayed event for event', async () => {
    t.server().set({ toolCalls: true });
    const c = client();
    const key = { headers: { 'Idempotency-Key': 'tool-use' } };
    const first = await c.messages.stream(message, key).finalMessage();
    const again = await c.messages.stream(message, key).finalMessage();
    expect(first.content).toEqual([{ type: 'tool_use', id: 'toolu_1', name: 'lookup', input: { q: '42' } }]);
    expect(again).toEqual(first);
    const raw = await (await c.messages.create({ ...message, stream: true }, key).asResponse()).text();
    expect(raw).toMatch(/^event: message_start\n/);
    expect(raw).toContain('event: message_stop');
    expect(t.server().billed).toBe(1);
  });

  it('a stream that ends in an overloaded error before any content is not kept: the retry with the key runs again', async () => {
    t.server().set({ overloadedStreams: 1 });
    const idem = t.idem();
    const c = withIdem(new Anthropic({ apiKey: 'sk-a', baseURL: t.server().url }), { idem, scope: 'o' });
    const key = { headers: { 'Idempotency-Key': 'overloaded' } };
    const error = await c.messages
      .stream(message, key)
      .finalMessage()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect(String(error)).toContain('overloaded_error');
    // the SDK raises the error at the error event; the key is released once the stream has ended
    const id = idem.ids('overloaded', 'o').recordId;
    // released: the record is gone, or a released marker (attempt 0, no token) guards the fingerprint
    const held = async () => {
      const r = await idem.store.get(id);
      return r?.state === 'in_progress' && r.attempt > 0;
    };
    for (let i = 0; i < 100 && (await held()); i++) await new Promise((r) => setTimeout(r, 20));
    const record = await idem.store.get(id);
    if (record) expect(record).toMatchObject({ state: 'in_progress', attempt: 0, token: '' });
    const retried = await c.messages.stream(message, key).finalMessage();
    expect(retried.content).toEqual([{ type: 'text', text: ANSWER }]);
    expect(t.server().requests).toBe(2);
    expect(t.server().billed).toBe(1);
  });

  it('the idempotencyKey request option works as the key too', async () => {
    const c = client();
    await c.messages.create(message, { idempotencyKey: 'opt-key' });
    const { response } = await c.messages.create(message, { idempotencyKey: 'opt-key' }).withResponse();
    expect(response.headers.get('idempotent-replayed')).toBe('true');
    expect(t.server().keys).toEqual(['opt-key']);
    expect(t.server().billed).toBe(1);
  });

  it('the same key with another request throws FingerprintMismatchError, not retried, nothing billed again', async () => {
    const c = client();
    const key = { headers: { 'Idempotency-Key': 'reused' }, maxRetries: 2 };
    await c.messages.create(message, key);
    const error = await c.messages.create({ ...message, max_tokens: 1 }, key).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'FingerprintMismatchError', status: 422 });
    expect(t.server().billed).toBe(1);
    expect(t.server().requests).toBe(1);
  });

  it('count_tokens and GET endpoints pass through untouched (no key, no record)', async () => {
    const c = client();
    expect(await c.messages.countTokens(message)).toEqual({ input_tokens: 10 });
    await c.models.list();
    expect(t.server().unbilled).toEqual([
      'POST /v1/messages/count_tokens (no key)',
      'GET /v1/models (no key)',
    ]);
    expect(t.server().requests).toBe(0);
  });

  it('idemMiddleware on a client built by hand, after the app’s own middleware', async () => {
    const seen: string[] = [];
    const c = new Anthropic({
      apiKey: 'sk-a',
      baseURL: t.server().url,
      middleware: [
        async (request, next) => {
          const response = await next(request);
          seen.push(response.headers.get('idempotent-replayed') ?? 'fresh');
          return response;
        },
        idemMiddleware({ idem: t.idem() }),
      ],
    });
    const a = await c.messages.create(message, { headers: { 'Idempotency-Key': 'mw' } });
    const b = await c.messages.create(message, { headers: { 'Idempotency-Key': 'mw' } });
    expect(b).toEqual(a);
    expect(a.content).toEqual([{ type: 'text', text: ANSWER }]);
    expect(seen).toEqual(['fresh', 'true']);
  });
});

describe('anthropic: usage kept with the stored outcome', () => {
  it('from message_start and message_delta, merged', async () => {
    const idem = t.idem();
    const c = withIdem(new Anthropic({ apiKey: 'sk-a', baseURL: t.server().url }), { idem, scope: 'usage' });
    await c.messages.stream(message, { headers: { 'Idempotency-Key': 'u-sse' } }).finalMessage();
    expect(await storedUsage(idem, 'u-sse', 'usage')).toEqual({ input_tokens: 10, output_tokens: 7 });
  });
});

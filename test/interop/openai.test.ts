/**
 * The real openai SDK through the gateway: the SDK sends no idempotency header by itself, so
 * the key goes in `headers`. Its attempt times out after 1 s while the upstream's completion
 * takes 1.5 s; its retry (same key) must get that completion within seconds, not after a
 * 30 s Retry-After, and the upstream must run it once.
 */
import { randomUUID } from 'node:crypto';
import { createGateway, type Gateway } from 'idem/gateway';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CustomerService, startCustomerService } from './upstream.ts';

describe('openai SDK × gateway', () => {
  let upstream: CustomerService;
  let gateway: Gateway;
  let client: OpenAI;
  beforeAll(async () => {
    upstream = await startCustomerService();
    gateway = await createGateway({ upstream: upstream.url, store: 'memory', purgeEvery: false });
    const url = await gateway.listen(0);
    client = new OpenAI({ apiKey: 'sk-interop', baseURL: `${url}/v1`, timeout: 1000, maxRetries: 2 });
  });
  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
  });

  it('a retry after a client timeout gets the one completion in seconds', async () => {
    upstream.scenario({ slowMs: 1500 });
    const started = performance.now();
    const completion = await client.chat.completions.create(
      { model: 'gpt-test', messages: [{ role: 'user', content: 'once' }] },
      // signal: fail in 8 s rather than sit out a lease-long Retry-After (the SDK honours up to 60 s)
      { headers: { 'Idempotency-Key': randomUUID() }, signal: AbortSignal.timeout(8000) },
    );
    const ms = performance.now() - started;
    await new Promise((r) => setTimeout(r, Math.max(0, 1800 - ms)));
    expect(completion.choices[0]?.message.content).toBe('once');
    expect(upstream.received).toBe(1);
    expect(upstream.executions).toBe(1);
    expect(ms).toBeLessThan(5000);
  });

  it('without a key the SDK sends none (idempotencyKey alone is dropped): two timeouts run twice', async () => {
    upstream.scenario({ slowMs: 1500 });
    const quick = new OpenAI({ apiKey: 'sk-interop', baseURL: client.baseURL, timeout: 1000, maxRetries: 1 });
    await expect(
      quick.chat.completions.create(
        { model: 'gpt-test', messages: [{ role: 'user', content: 'twice' }] },
        { idempotencyKey: 'dropped' },
      ),
    ).rejects.toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    await new Promise((r) => setTimeout(r, 1500));
    expect(upstream.received).toBe(2);
    expect(upstream.executions).toBe(2);
    expect([...upstream.executionsByKey.keys()]).toEqual(['']);
  });
});

/**
 * Why docs/clients.md says "no undici `fetch` + `RetryAgent` for POST bodies": fetch hands
 * the dispatcher a one-shot body stream, so the retry goes on the wire as a complete request
 * with `content-length: 0` (undici 7 then also reports a content-length mismatch to the app;
 * undici 8 was measured answering it). After a released key (503) that empty request is a new
 * request to idem: it claims the key and the upstream runs it. `request` with a string body
 * (the matrix's undici client) sends the same body again.
 */
import { createGateway, type Gateway } from 'idem/gateway';
import { Agent, fetch, RetryAgent } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { undiciClient } from './clients.ts';
import { type CustomerService, startCustomerService } from './upstream.ts';

let upstream: CustomerService;
let gateway: Gateway;
let url: string;
beforeAll(async () => {
  upstream = await startCustomerService();
  gateway = await createGateway({ upstream: upstream.url, store: 'memory', purgeEvery: false });
  url = await gateway.listen(0);
});
afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
});

it('fetch + RetryAgent resends a POST without its body; after a 503 the release guard refuses that empty request (422), so it never runs', async () => {
  upstream.scenario({ first: '503' });
  const body = JSON.stringify({ name: 'Ada' });
  const dispatcher = new RetryAgent(new Agent(), {
    methods: ['POST'],
    statusCodes: [503],
    maxRetries: 2,
    minTimeout: 100,
  });
  const outcome = await fetch(`${url}/v1/customers`, {
    method: 'POST',
    dispatcher,
    headers: { authorization: 'Bearer x', 'content-type': 'application/json', 'idempotency-key': 'f1' },
    body,
  }).then(
    async (res) => ({ status: res.status, text: await res.text() }),
    (error: Error) => ({ error }),
  );
  await dispatcher.close();
  await new Promise((r) => setTimeout(r, 300)); // the upstream's answer time, had anything been sent
  expect(upstream.bodies).toEqual([body]); // the bodiless retry never reached the upstream
  expect(upstream.executions).toBe(0);
  // the app sees the refusal (or undici's own complaint about the missing body), never a success
  if ('status' in outcome) {
    expect(outcome.status).toBe(422);
    expect(JSON.parse(outcome.text)).toMatchObject({ code: 'idempotency_key_reused' });
  } else expect(outcome.error).toBeInstanceOf(Error);
});

it('request + RetryAgent with a string body sends the same body again', async () => {
  upstream.scenario({ first: '503' });
  const client = undiciClient(url);
  const out = await client.create({ name: 'Ada' }, 'r1');
  await client.close?.();
  expect(out).toMatchObject({ ok: true, id: expect.stringMatching(/^cus_/) });
  expect(upstream.bodies).toEqual([JSON.stringify({ name: 'Ada' }), JSON.stringify({ name: 'Ada' })]);
});

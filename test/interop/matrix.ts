/**
 * The client matrix: every real client × every failure row, through one front (the gateway
 * or a middleware). Each row asserts one upstream execution (or none where the request never
 * reached it), the answer the application would expect (a customer with an id, or the
 * client's typed error with idem's code), and that it took seconds, not a 30 s lease.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENTS, type Client, type Outcome } from './clients.ts';
import { type CustomerService, type Scenario, startCustomerService } from './upstream.ts';

/** A running front: the URL clients talk to. */
export interface Front {
  url: string;
  close(): Promise<void>;
}

export interface MatrixOptions {
  /** `'gateway'` or `'express'`: in the test names. */
  name: string;
  start(service: CustomerService): Promise<Front>;
  /**
   * What the application sees when the connection to the upstream (or the handler's client)
   * was reset after the request arrived: the gateway cannot know the outcome (502
   * `indeterminate_outcome`, stored); a middleware ran the handler to the end (the customer).
   */
  afterReset: 'indeterminate' | 'customer';
}

/** Fast enough to be seconds, far below the 30 s a lease-long Retry-After costs. */
const FAST_MS = 5000;
const ADA = { name: 'Ada', email: 'ada@example.com' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const timed = async <T>(work: () => Promise<T>) => {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
};

function expectCustomer(out: Outcome) {
  expect(out, `a customer with an id, got ${JSON.stringify(out)}`).toMatchObject({
    ok: true,
    id: expect.stringMatching(/^cus_/),
  });
}

function expectError(out: Outcome, status: number, code?: string) {
  // a typed error of the client, never a "success" without an id
  expect(out.ok, `a ${status} error, got ${JSON.stringify(out)}`).toBe(false);
  if (out.ok) return;
  expect(out.error).toMatch(/Error$|^response$/);
  expect(out.status).toBe(status);
  // undici's RetryAgent drops the body of the last retried answer; every other client reads the code
  if (code !== undefined && out.error !== 'RequestRetryError') expect(out.code).toBe(code);
}

/**
 * Declares the matrix for one front.
 *
 * @example
 * clientMatrix({ name: 'gateway', start: startGatewayFront, afterReset: 'indeterminate' });
 */
export function clientMatrix(options: MatrixOptions): void {
  // Clients run side by side (each has its own upstream and front); a client's rows run in order.
  for (const make of CLIENTS) {
    const label = make.name.replace(/Client$/, '');
    describe.concurrent(`${options.name} × ${label}`, () => {
      describe.sequential('rows', () => {
        let service: CustomerService;
        let front: Front;
        let client: Client;
        beforeAll(async () => {
          service = await startCustomerService();
          front = await options.start(service);
          client = make(front.url);
        });
        afterAll(async () => {
          await client?.close?.();
          await front?.close();
          await service?.close();
        });

        const run = async (scenario: Scenario, params = ADA, key = randomUUID()) => {
          service.scenario(scenario);
          return timed(() => client.create(params, key));
        };

        it('upstream slower than the client timeout: one execution, the customer', async () => {
          const { value, ms } = await run({ first: 'slow', slowMs: 1500 });
          await sleep(Math.max(0, 1700 - ms)); // a late duplicate would have arrived by now
          expectCustomer(value);
          expect(service.executions).toBe(1);
          expect(ms).toBeLessThan(FAST_MS);
        });

        it('5 concurrent duplicates: one execution, the same customer for all', async () => {
          service.scenario({ delayMs: 600 });
          const key = randomUUID();
          const { value: outs, ms } = await timed(() =>
            Promise.all(Array.from({ length: 5 }, () => client.create(ADA, key))),
          );
          for (const out of outs) expectCustomer(out);
          expect(new Set(outs.map((o) => (o.ok ? o.id : o.error))).size).toBe(1);
          expect(service.executions).toBe(1);
          expect(ms).toBeLessThan(FAST_MS);
        });

        it('first call 500: one execution, a typed 500 error (replayed, not retried into a second one)', async () => {
          const { value, ms } = await run({ first: '500' });
          expectError(value, 500);
          // a stored 500 says x-should-retry: false when first sent: a client that reads it stops there
          if (value.attempts !== undefined) expect(value.attempts, 'attempts').toBe(1);
          expect(service.received).toBe(1);
          expect(service.executions).toBe(1);
          expect(ms).toBeLessThan(FAST_MS);
        });

        it('first call 503 (nothing done): retried, one execution, the customer', async () => {
          const { value, ms } = await run({ first: '503' });
          expectCustomer(value);
          expect(service.received).toBe(2);
          expect(service.executions).toBe(1);
          expect(ms).toBeLessThan(FAST_MS);
        });

        it('first call 429 (nothing done): the key is released, one execution, the customer', async () => {
          const key = randomUUID();
          const { value, ms } = await run({ first: '429' }, ADA, key);
          if (client.retries429) expectCustomer(value);
          else {
            // stripe-node surfaces a 429 as StripeRateLimitError; the app calls again with the same key
            expectError(value, 429);
            expect(value.ok || value.error).toBe('StripeRateLimitError');
            expect(service.executions).toBe(0);
            expectCustomer(await client.create(ADA, key));
          }
          expect(service.received).toBe(2);
          expect(service.executions).toBe(1);
          expect(ms).toBeLessThan(FAST_MS);
        });

        it('connection reset after the request was received: one execution, an honest answer', async () => {
          const { value, ms } = await run({ first: 'reset' });
          await sleep(200);
          if (options.afterReset === 'customer') expectCustomer(value);
          else {
            expectError(value, 502, 'indeterminate_outcome');
            if (value.attempts !== undefined) expect(value.attempts, 'attempts').toBe(1);
          }
          expect(service.executions).toBe(1);
          expect(ms).toBeLessThan(FAST_MS);
        });

        it('key reused with another body: a typed 422 error, no second execution', async () => {
          const key = randomUUID();
          const first = await run({}, ADA, key);
          expectCustomer(first.value);
          const { value, ms } = await timed(() => client.create({ ...ADA, name: 'Bob' }, key));
          expectError(value, 422, 'idempotency_key_reused');
          expect(service.executions).toBe(1);
          expect(ms).toBeLessThan(FAST_MS);
        });
      });
    });
  }
}

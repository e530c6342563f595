/**
 * stripe-node reads only `Stripe-Should-Retry`: with idem's default `x-should-retry` it fetches
 * a stored 5xx `maxNetworkRetries` more times (harmless replays). `shouldRetryHeaders` adding
 * `stripe-should-retry` makes it stop after the first answer. Real stripe-node, real Express.
 */
import express from 'express';
import { createIdem, memoryStore } from 'idem';
import { idempotency } from 'idem/express';
import type { IdempotencyOptions } from 'idem/http';
import Stripe from 'stripe';
import { afterEach, describe, expect, it } from 'vitest';
import { listen } from './migrating/serve.ts';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** POST /v1/customers answering a stored 500; counts requests reaching the app and runs. */
async function failingApi(options: Partial<IdempotencyOptions>) {
  const counts = { requests: 0, runs: 0 };
  const app = express();
  app.use((_req, _res, next) => {
    counts.requests++;
    next();
  });
  app.post(
    '/v1/customers',
    idempotency({ idem: createIdem({ store: memoryStore() }), ...options }),
    (_req, res) => {
      counts.runs++;
      res.status(500).json({ error: { type: 'api_error', message: 'ledger write failed' } });
    },
  );
  const server = await listen(app);
  closers.push(server.close);
  const url = new URL(server.url);
  const stripe = new Stripe('sk_test_retry', {
    host: url.hostname,
    port: Number(url.port),
    protocol: 'http',
    maxNetworkRetries: 2,
  });
  const call = () =>
    stripe.customers.create({ email: 'a@example.com' }, { idempotencyKey: 'cus-1' }).catch((e) => e);
  return { counts, call };
}

describe('stripe-node and a stored 5xx', () => {
  it('by default stripe-node retries it (replays; the handler ran once)', async () => {
    const { counts, call } = await failingApi({});
    const error = await call();
    expect(error).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(counts.runs).toBe(1);
    expect(counts.requests).toBe(3);
  }, 20_000);

  it("shouldRetryHeaders: ['x-should-retry', 'stripe-should-retry'] stops it after one request", async () => {
    const { counts, call } = await failingApi({
      shouldRetryHeaders: ['x-should-retry', 'stripe-should-retry'],
    });
    const error = await call();
    expect(error).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(counts.runs).toBe(1);
    expect(counts.requests).toBe(1);
  }, 20_000);
});

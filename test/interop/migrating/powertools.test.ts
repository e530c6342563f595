/**
 * The recipes of docs/migrating/powertools.md (`@aws-lambda-powertools/idempotency`), run
 * against idem's engine and its web-standard middleware (`withIdempotency`).
 */
import { createIdem, FingerprintMismatchError, type IdemEvent, InProgressError, memoryStore } from 'idem';
import { withIdempotency } from 'idem/http';
import { redisStore } from 'idem/redis';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { serviceAvailable, uniqueName } from '../../helpers/services.ts';
import { deletePrefix } from '../../stores/fixtures/redis-suite.ts';

interface OrderEvent {
  orderId: string;
  amount: number;
  requestedAt?: number;
}

/** The business function, counting its executions. */
function processOrder() {
  const calls = { runs: 0 };
  const fn = async (event: OrderEvent) => {
    calls.runs += 1;
    return { orderId: event.orderId, charged: event.amount, run: calls.runs };
  };
  return { fn, calls };
}

const redisUp = await serviceAvailable('redis');

describe('migrating from @aws-lambda-powertools/idempotency', () => {
  it('makeIdempotent + eventKeyJmesPath: "orderId" → idem.run(idem.key(prefix, event.orderId), …)', async () => {
    const idem = createIdem({ store: memoryStore() });
    const { fn, calls } = processOrder();
    const handler = (event: OrderEvent) => idem.run(idem.key('processOrder', event.orderId), () => fn(event));
    const a = await handler({ orderId: 'o1', amount: 10, requestedAt: 1 });
    const b = await handler({ orderId: 'o1', amount: 10, requestedAt: 2 });
    expect(b).toEqual(a);
    expect(calls.runs).toBe(1);
  });

  it('payloadValidationJmesPath: "amount" → input: { amount } (a change is FingerprintMismatchError)', async () => {
    const idem = createIdem({ store: memoryStore() });
    const { fn, calls } = processOrder();
    const handler = (event: OrderEvent) =>
      idem.run(idem.key('processOrder', event.orderId), () => fn(event), { input: { amount: event.amount } });
    await handler({ orderId: 'o1', amount: 10, requestedAt: 1 });
    await handler({ orderId: 'o1', amount: 10, requestedAt: 2 });
    await expect(handler({ orderId: 'o1', amount: 99 })).rejects.toBeInstanceOf(FingerprintMismatchError);
    expect(calls.runs).toBe(1);
  });

  it('an exception deletes the record → a thrown error releases the key; the next call runs', async () => {
    const idem = createIdem({ store: memoryStore() });
    let runs = 0;
    const flaky = () =>
      idem.run('charge-o1', async () => {
        runs += 1;
        if (runs === 1) throw new Error('downstream timeout');
        return 'charged';
      });
    await expect(flaky()).rejects.toThrow('downstream timeout');
    expect(await flaky()).toBe('charged');
    expect(runs).toBe(2);
  });

  it('to store an error instead of releasing the key → definitive: (error) => …', async () => {
    class PaymentDeclined extends Error {
      override name = 'PaymentDeclined';
    }
    const idem = createIdem({ store: memoryStore(), definitive: (e) => e instanceof PaymentDeclined });
    let runs = 0;
    const pay = () =>
      idem.run('pay-o1', async () => {
        runs += 1;
        throw new PaymentDeclined('card declined');
      });
    await expect(pay()).rejects.toThrow('card declined');
    await expect(pay()).rejects.toThrow('card declined');
    expect(runs).toBe(1);
  });

  it('in-progress expiry → lease, renewed while the function runs', async () => {
    const store = memoryStore(); // two Lambda instances sharing one store
    const first = createIdem({ store, lease: 200 });
    const other = createIdem({ store, lease: 200, onInProgress: 'reject' });
    const long = first.run('long', () => new Promise((r) => setTimeout(() => r('done'), 600)));
    await new Promise((r) => setTimeout(r, 400)); // past one lease: the heartbeat kept it
    await expect(other.run('long', async () => 'second')).rejects.toBeInstanceOf(InProgressError);
    expect(await long).toBe('done');
  });

  it('IdempotencyAlreadyInProgressError → InProgressError (onInProgress "reject"), or wait for the result', async () => {
    const slow = () => new Promise((r) => setTimeout(() => r('done'), 200));
    const rejecting = createIdem({ store: memoryStore(), onInProgress: 'reject' });
    const first = rejecting.run('k', slow);
    await expect(rejecting.run('k', slow)).rejects.toBeInstanceOf(InProgressError);
    await first;
    const waiting = createIdem({ store: memoryStore(), onInProgress: 'wait' });
    expect(await Promise.all([waiting.run('k', slow), waiting.run('k', slow)])).toEqual(['done', 'done']);
  });

  it('responseHook (mark replays) → idem.execute() answers { value, replayed }', async () => {
    const idem = createIdem({ store: memoryStore() });
    const { fn } = processOrder();
    const event = { orderId: 'o1', amount: 10 };
    expect((await idem.execute('o1', () => fn(event))).replayed).toBe(false);
    expect((await idem.execute('o1', () => fn(event))).replayed).toBe(true);
  });

  it('expiresAfterSeconds → ttl', async () => {
    const idem = createIdem({ store: memoryStore(), ttl: 300 });
    const { fn, calls } = processOrder();
    const run = () => idem.run('o1', () => fn({ orderId: 'o1', amount: 1 }));
    await run();
    await run();
    expect(calls.runs).toBe(1);
    await new Promise((r) => setTimeout(r, 450));
    await run();
    expect(calls.runs).toBe(2);
  });

  it('useLocalCache / maxLocalCacheSize → replayCache: { maxEntries }', async () => {
    const events: IdemEvent[] = [];
    const idem = createIdem({
      store: memoryStore(),
      replayCache: { maxEntries: 256 },
      onEvent: (e) => events.push(e),
    });
    const { fn, calls } = processOrder();
    const run = () => idem.run('o1', () => fn({ orderId: 'o1', amount: 1 }));
    await run();
    await run();
    await run();
    expect(events.some((e) => e.type === 'replayed' && e.cached)).toBe(true);
    expect(calls.runs).toBe(1);
  });

  it('an API Gateway handler with throwOnNoIdempotencyKey → withIdempotency(handler, { required: true })', async () => {
    const idem = createIdem({ store: memoryStore() });
    let runs = 0;
    const handler = withIdempotency(
      async (req: Request) => {
        runs += 1;
        return Response.json({ order: await req.json(), run: runs }, { status: 201 });
      },
      { idem, required: true },
    );
    const request = (key?: string) =>
      new Request('https://api.example/orders', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: 'Bearer t',
          ...(key && { 'idempotency-key': key }),
        },
        body: JSON.stringify({ orderId: 'o1' }),
      });
    expect((await handler(request())).status).toBe(400);
    const a = await handler(request('o1'));
    const b = await handler(request('o1'));
    expect(await b.json()).toEqual(await a.json());
    expect(runs).toBe(1);
  });

  it.skipIf(!redisUp)('CachePersistenceLayer (Redis / Valkey) → redisStore', async () => {
    const prefix = uniqueName('idem_interop');
    const store = redisStore({ url: 'redis://127.0.0.1:6379', prefix });
    try {
      const idem = createIdem({ store });
      const { fn, calls } = processOrder();
      const handler = (event: OrderEvent) =>
        idem.run(idem.key('processOrder', event.orderId), () => fn(event));
      await Promise.allSettled([
        handler({ orderId: 'o1', amount: 1 }),
        handler({ orderId: 'o1', amount: 1 }),
      ]);
      await handler({ orderId: 'o1', amount: 1 });
      expect(calls.runs).toBe(1);
    } finally {
      await store.close?.();
      const admin = new Redis('redis://127.0.0.1:6379');
      await deletePrefix(admin, prefix); // the record would otherwise stay for its 24 h
      admin.disconnect();
    }
  });
});

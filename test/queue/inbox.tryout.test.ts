/**
 * What an outside tryout found in `consumeOnce` and the queue adapters, without a broker:
 * ctx.attempt agreeing with the recorded failures whatever `redelivered` says, a NaN retry
 * delay, and `idem/amqp` hooks and ids (a throwing or non-function `onResult`, numeric header
 * ids, a missing id, a per-message `input`). Broker-level findings are in the adapters' tests.
 */
import type { ConsumeMessage } from 'amqplib';
import { createIdem, InvalidKeyError, InvalidOptionError, memoryStore } from 'idem';
import { idempotentConsumer } from 'idem/amqp';
import { idempotentProcessor } from 'idem/bullmq';
import { describe, expect, it } from 'vitest';

const message = (props: Partial<ConsumeMessage['properties']>, body = '{}') =>
  ({
    content: Buffer.from(body),
    fields: { redelivered: false, deliveryTag: 1 },
    properties: { headers: {}, ...props },
  }) as unknown as ConsumeMessage;

function fakeChannel() {
  const settled: string[] = [];
  return {
    settled,
    ack: () => settled.push('ack'),
    nack: (_m: unknown, _all?: boolean, requeue?: boolean) => settled.push(requeue ? 'requeue' : 'dead'),
  };
}

describe('consumeOnce: tryout findings', () => {
  it('ctx.attempt agrees with the recorded failures on every delivery (no broker flag is trusted)', async () => {
    const idem = createIdem({ store: memoryStore() });
    const seen: number[] = [];
    const attempts: number[] = [];
    const ref = { consumer: 'c', messageId: 'm' };
    for (let delivery = 0; delivery < 4; delivery++) {
      const r = await idem.consumeOnce(
        ref,
        async (ctx) => {
          seen.push(ctx.attempt);
          throw new Error('x');
        },
        { maxAttempts: 5, retryDelay: () => 1 },
      );
      attempts.push((r as { attempts: number }).attempts);
    }
    expect(attempts).toEqual([1, 2, 3, 4]);
    expect(seen).toEqual([1, 2, 3, 4]);
  });

  it('a retryDelay answering NaN is an InvalidOptionError', async () => {
    const idem = createIdem({ store: memoryStore() });
    await expect(
      idem.consumeOnce(
        { consumer: 'c', messageId: 'nan' },
        async () => {
          throw new Error('x');
        },
        { retryDelay: () => Number.NaN },
      ),
    ).rejects.toThrow(InvalidOptionError);
  });
});

describe('idem/amqp: hooks and ids', () => {
  const idem = createIdem({ store: memoryStore() });

  it('a non-function onResult or onError is refused when the consumer is built', () => {
    const ch = fakeChannel();
    expect(() => idempotentConsumer(idem, ch, { consumer: 'c', onResult: 'log' } as never, () => 1)).toThrow(
      InvalidOptionError,
    );
    expect(() => idempotentConsumer(idem, ch, { consumer: 'c', onError: 1 } as never, () => 1)).toThrow(
      InvalidOptionError,
    );
  });

  it('a throwing onResult goes to onError; the message is still settled, the callback never rejects', async () => {
    const ch = fakeChannel();
    const errors: unknown[] = [];
    const onMessage = idempotentConsumer(
      idem,
      ch,
      {
        consumer: 'hooks',
        onResult: () => {
          throw new Error('metrics backend down');
        },
        onError: (e) => errors.push(e),
      },
      () => 'ok',
    );
    await expect(onMessage(message({ messageId: 'm1' }))).resolves.toMatchObject({ status: 'processed' });
    expect(ch.settled).toEqual(['ack']);
    expect(String(errors[0])).toMatch(/metrics backend down/);
  });

  it('numeric header ids are used as strings; a missing id is reported to onError and dead-lettered', async () => {
    const ch = fakeChannel();
    const errors: unknown[] = [];
    let runs = 0;
    const onMessage = idempotentConsumer(
      idem,
      ch,
      { consumer: 'numeric', messageId: { header: 'event-id' }, onError: (e) => errors.push(e) },
      () => ++runs,
    );
    await onMessage(message({ headers: { 'event-id': 42 } }));
    const dup = await onMessage(message({ headers: { 'event-id': 42 } }));
    expect(dup).toMatchObject({ status: 'duplicate', value: 1 });
    expect(runs).toBe(1);
    await onMessage(message({ headers: {} }));
    expect(ch.settled).toEqual(['ack', 'ack', 'dead']);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(InvalidKeyError);
  });

  it('input may be a function of the message: a redelivery with another payload is rejected', async () => {
    const ch = fakeChannel();
    const onMessage = idempotentConsumer(
      idem,
      ch,
      { consumer: 'payload', input: (m: ConsumeMessage) => m.content.toString() },
      () => 'charged',
    );
    await onMessage(message({ messageId: 'order-9' }, '{"amount":42}'));
    const changed = await onMessage(message({ messageId: 'order-9' }, '{"amount":9999}'));
    expect(changed).toMatchObject({ status: 'rejected', reason: 'fingerprint_mismatch' });
    expect(ch.settled).toEqual(['ack', 'dead']);
  });
});

describe('idem/bullmq: ids', () => {
  it('the default id is qualified with the queue: job 1 of two queues runs twice', async () => {
    const idem = createIdem({ store: memoryStore() });
    let runs = 0;
    const processor = idempotentProcessor(idem, { consumer: 'billing' }, async () => ++runs);
    const job = (queue: string) =>
      ({
        id: '1',
        queueName: queue,
        queueQualifiedName: `bull:${queue}`,
        opts: {},
        data: {},
        attemptsMade: 0,
      }) as never;
    expect(await processor(job('eu'))).toBe(1);
    expect(await processor(job('us'))).toBe(2);
    expect(await processor(job('us'))).toBe(2);
    // input may be a function of the job: another payload under the same job id is refused
    const paying = idempotentProcessor(
      idem,
      { consumer: 'pay', input: (j: { data: unknown }) => j.data },
      async () => 'ok',
    );
    const withData = (amount: number) => ({ ...(job('eu') as object), data: { amount } }) as never;
    expect(await paying(withData(1))).toBe('ok');
    await expect(paying(withData(2))).rejects.toThrow(/rejected/);
    expect(() => idempotentProcessor(idem, { consumer: 'c', onResult: 'x' } as never, () => 1)).toThrow(
      InvalidOptionError,
    );
  });
});

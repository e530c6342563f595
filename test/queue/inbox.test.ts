/**
 * `idem.consumeOnce` over the memory store: per-consumer dedup, the recorded outcome for
 * duplicates, failures counted in the store and parking, crashed runs counted, in-progress
 * retries, option validation.
 */

import fc from 'fast-check';
import { createIdem, definitive, InvalidKeyError, InvalidOptionError, memoryStore } from 'idem';
import { describe, expect, it } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fresh = () => createIdem({ store: memoryStore(), lease: '200ms' });

describe('consumeOnce', () => {
  it('runs once per consumer; duplicates get the recorded value and ack', async () => {
    const idem = fresh();
    let runs = 0;
    const handler = async () => ++runs;
    const a = await idem.consumeOnce({ consumer: 'billing', messageId: 'm1' }, handler);
    expect(a).toMatchObject({ status: 'processed', next: 'ack', duplicate: false, value: 1 });
    const b = await idem.consumeOnce({ consumer: 'billing', messageId: 'm1' }, handler);
    expect(b).toMatchObject({ status: 'duplicate', next: 'ack', duplicate: true, value: 1 });
    // fan-out: another consumer of the same message runs its own handler once
    const c = await idem.consumeOnce({ consumer: 'audit', messageId: 'm1' }, handler);
    expect(c).toMatchObject({ status: 'processed', value: 2 });
    expect(runs).toBe(2);
  });

  it('concurrent duplicates: one run, the others are told to retry; the redelivery acks', async () => {
    const idem = fresh();
    let runs = 0;
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        idem.consumeOnce({ consumer: 'c', messageId: 'same' }, async () => {
          await sleep(20);
          return ++runs;
        }),
      ),
    );
    expect(runs).toBe(1);
    expect(results.filter((r) => r.status === 'processed')).toHaveLength(1);
    const others = results.filter((r) => r.status !== 'processed');
    expect(
      others.every((r) => r.status === 'retry' && r.reason === 'in_progress' && r.retryAfterMs > 0),
    ).toBe(true);
    const again = await idem.consumeOnce({ consumer: 'c', messageId: 'same' }, async () => ++runs);
    expect(again).toMatchObject({ status: 'duplicate', next: 'ack', value: 1 });
    expect(runs).toBe(1);
  });

  it('a failure releases the key (retry with backoff); after maxAttempts the message is parked', async () => {
    const idem = fresh();
    const ref = { consumer: 'c', messageId: 'poison' };
    let runs = 0;
    const attempts: number[] = [];
    const handler = async (ctx: { attempt: number }) => {
      runs++;
      attempts.push(ctx.attempt);
      throw new Error(`boom ${runs}`);
    };
    const opts = { maxAttempts: 3, retryDelay: (n: number) => n * 10 };
    const r1 = await idem.consumeOnce(ref, handler, opts);
    expect(r1).toMatchObject({
      status: 'retry',
      next: 'retry',
      reason: 'failed',
      attempts: 1,
      retryAfterMs: 10,
    });
    expect((r1 as { error: Error }).error.message).toBe('boom 1');
    const r2 = await idem.consumeOnce(ref, handler, opts);
    expect(r2).toMatchObject({ status: 'retry', attempts: 2, retryAfterMs: 20 });
    const r3 = await idem.consumeOnce(ref, handler, opts);
    expect(r3).toMatchObject({ status: 'parked', next: 'dead_letter', duplicate: false, attempts: 3 });
    expect((r3 as { error: { message: string } }).error.message).toBe('boom 3');
    // parked is recorded: a later delivery does not run the handler again
    const r4 = await idem.consumeOnce(ref, handler, opts);
    expect(r4).toMatchObject({ status: 'parked', duplicate: true, attempts: 3 });
    expect(runs).toBe(3);
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('a failure then a success: processed once, attempt counts the failure', async () => {
    const idem = fresh();
    const ref = { consumer: 'c', messageId: 'flaky' };
    let runs = 0;
    const handler = async (ctx: { attempt: number }) => {
      if (++runs === 1) throw new Error('transient');
      return ctx.attempt;
    };
    expect((await idem.consumeOnce(ref, handler)).status).toBe('retry');
    expect(await idem.consumeOnce(ref, handler)).toMatchObject({ status: 'processed', value: 2 });
    expect(await idem.consumeOnce(ref, handler)).toMatchObject({ status: 'duplicate', value: 2 });
  });

  it('a definitive error parks at once', async () => {
    const idem = fresh();
    let runs = 0;
    const handler = async () => {
      runs++;
      throw definitive(new Error('invalid payload'));
    };
    const r = await idem.consumeOnce({ consumer: 'c', messageId: 'bad' }, handler);
    expect(r).toMatchObject({ status: 'parked', attempts: 1 });
    expect(runs).toBe(1);
  });

  it('runs that die mid-handler count as failed runs: a crashing message is parked too', async () => {
    const store = memoryStore();
    // a worker that dies: its heartbeat never reaches the store, so its lease runs out
    const frozen = { ...store, renew: async () => Date.now() + 600 };
    // one instance per "worker": within one instance a duplicate joins the pending flight
    const dying = () => createIdem({ store: frozen, lease: '600ms' });
    const ref = { consumer: 'c', messageId: 'crasher' };
    const seen: Array<{ attempt: number; mayHaveRun: boolean }> = [];
    const hang = (ctx: { attempt: number; mayHaveRun: boolean }) => {
      seen.push({ attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun });
      return new Promise<never>(() => {});
    };
    void dying().consumeOnce(ref, hang, { maxAttempts: 2 });
    await sleep(50);
    const live = createIdem({ store, lease: '600ms' });
    expect(await live.consumeOnce(ref, async () => 'x')).toMatchObject({
      status: 'retry',
      reason: 'in_progress',
    });
    await sleep(800);
    void dying().consumeOnce(ref, hang, { maxAttempts: 2 }); // takes over: counts the first death
    await sleep(800);
    let ran = false;
    const r = await live.consumeOnce(
      ref,
      async () => {
        ran = true;
      },
      { maxAttempts: 2 },
    );
    expect(r).toMatchObject({ status: 'parked', next: 'dead_letter', attempts: 2 });
    expect((r as { error: { message: string } }).error.message).toMatch(/ended without an outcome/);
    expect(ran).toBe(false);
    expect(seen).toEqual([
      { attempt: 1, mayHaveRun: false },
      { attempt: 2, mayHaveRun: true },
    ]);
  });

  it('a lease lost while the failure count is read: the handler does not start, the delivery is retried', async () => {
    // The store answers the failure-count reads slowly and confirms no renewal: the holder's lease
    // runs out before the handler would start. Before the fix the handler ran anyway, an effect
    // by a holder that already knew its lease was gone (found by the chaos takeover audit).
    const inner = memoryStore();
    let slowReads = true;
    const store = {
      ...inner,
      renew: async () => undefined,
      get: async (id: string) => {
        if (slowReads) await new Promise((r) => setTimeout(r, 400));
        return inner.get(id);
      },
    };
    const idem = createIdem({ store });
    let runs = 0;
    const r = await idem.consumeOnce({ consumer: 'c', messageId: 'slow' }, async () => ++runs, {
      lease: 150,
    });
    expect(runs).toBe(0);
    expect(r).toMatchObject({ status: 'retry', next: 'retry' });
    slowReads = false;
    await new Promise((r) => setTimeout(r, 200)); // the lapsed lease ends; the redelivery takes it over
    const again = await idem.consumeOnce({ consumer: 'c', messageId: 'slow' }, async () => ++runs, {
      lease: 5000,
    });
    expect(again).toMatchObject({ status: 'processed', value: 1 });
    expect(runs).toBe(1);
  });

  it('refuses bad refs and options with typed errors', async () => {
    const idem = fresh();
    const h = async () => 1;
    await expect(idem.consumeOnce({ consumer: '', messageId: 'x' }, h)).rejects.toThrow(InvalidKeyError);
    await expect(idem.consumeOnce({ consumer: 'c', messageId: 5 as never }, h)).rejects.toThrow(
      InvalidKeyError,
    );
    await expect(
      idem.consumeOnce({ consumer: 'c', messageId: 'x' }, h, { maxAttemps: 3 } as never),
    ).rejects.toThrow(/unknown option maxAttemps/);
    await expect(idem.consumeOnce({ consumer: 'c', messageId: 'x' }, h, { maxAttempts: 0 })).rejects.toThrow(
      InvalidOptionError,
    );
    await expect(
      idem.consumeOnce({ consumer: 'c', messageId: 'x' }, h, { onInProgress: 'wait' } as never),
    ).rejects.toThrow(/never waits/);
  });

  it('another payload under the same message id is rejected, not run', async () => {
    const idem = fresh();
    const ref = { consumer: 'c', messageId: 'dup-id' };
    await idem.consumeOnce(ref, async () => 1, { input: { amount: 1 } });
    const r = await idem.consumeOnce(ref, async () => 2, { input: { amount: 2 } });
    expect(r).toMatchObject({ status: 'rejected', next: 'dead_letter', reason: 'fingerprint_mismatch' });
  });
});

describe('consumeOnce against a model (fast-check, fixed seed)', () => {
  it('answers every delivery sequence as the model says: processed once, failures counted, parked at maxAttempts', async () => {
    const outcome = fc.constantFrom('ok', 'fail', 'definitive');
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.array(outcome, { minLength: 1, maxLength: 12 }),
        async (maxAttempts, deliveries) => {
          const idem = createIdem({ store: memoryStore() });
          const ref = { consumer: 'model', messageId: 'm' };
          let state: 'open' | 'processed' | 'parked' = 'open';
          let failures = 0;
          let runs = 0;
          for (const [i, kind] of deliveries.entries()) {
            const r = await idem.consumeOnce(
              ref,
              async (ctx) => {
                runs++;
                expect(ctx.attempt).toBe(failures + 1);
                if (kind === 'ok') return i;
                throw kind === 'fail' ? new Error('transient') : definitive(new Error('bad'));
              },
              { maxAttempts, retryDelay: () => 0 },
            );
            if (state === 'processed') expect(r.status).toBe('duplicate');
            else if (state === 'parked') expect(r).toMatchObject({ status: 'parked', duplicate: true });
            else if (kind === 'ok') {
              expect(r).toMatchObject({ status: 'processed', value: i });
              state = 'processed';
            } else if (kind === 'definitive') {
              expect(r).toMatchObject({ status: 'parked', duplicate: false, attempts: failures + 1 });
              state = 'parked';
            } else {
              failures++;
              if (failures >= maxAttempts) {
                expect(r).toMatchObject({ status: 'parked', attempts: failures });
                state = 'parked';
              } else expect(r).toMatchObject({ status: 'retry', reason: 'failed', attempts: failures });
            }
          }
          // the handler ran exactly for the deliveries that found the message open
          expect(runs).toBe(expectedRuns(deliveries, maxAttempts));
        },
      ),
      { seed: 11, numRuns: 60 },
    );
  });
});

/** How many deliveries find the message open (not yet processed or parked). */
function expectedRuns(deliveries: string[], maxAttempts: number): number {
  let failures = 0;
  let runs = 0;
  for (const kind of deliveries) {
    runs++;
    if (kind !== 'fail') break;
    if (++failures >= maxAttempts) break;
  }
  return runs;
}

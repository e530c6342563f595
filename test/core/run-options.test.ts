import { createIdem, InvalidOptionError, memoryStore, resolveRunOptions } from 'idem';
import { describe, expect, it } from 'vitest';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('per-call options are validated like the instance ones', () => {
  it('lease: 0 per call is refused, so two instances never both run the action', async () => {
    const store = memoryStore();
    const a = createIdem({ store });
    const b = createIdem({ store });
    let runs = 0;
    const slow = async () => {
      runs++;
      await sleep(100);
      return 'done';
    };
    const results = await Promise.allSettled([
      a.run('k', slow, { lease: 0 }),
      (async () => {
        await sleep(20);
        return b.run('k', slow, { lease: 0 });
      })(),
    ]);
    expect(runs).toBe(0);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(InvalidOptionError);
      expect((r as PromiseRejectedResult).reason.message).toMatch(/^lease must be at least 50 ms/);
    }
  });

  it('every bad duration, policy and hook is an InvalidOptionError naming the option, before the action runs', async () => {
    const idem = createIdem({ store: memoryStore() });
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ lease: 10 }, /^lease must be at least 50 ms/],
      [{ lease: '5ms' }, /^lease must be at least 50 ms/],
      [{ ttl: 0 }, /^ttl must be more than 0/],
      [{ ttl: '0s' }, /^ttl must be more than 0/],
      [{ ttl: Number.POSITIVE_INFINITY }, /^ttl must be/],
      [{ waitTimeout: -1 }, /^waitTimeout must be/],
      [{ waitTimeout: Number.NaN }, /^waitTimeout must be/],
      [{ waitTimeout: '1 fortnight' }, /^waitTimeout must be/],
      [{ lease: null }, /^lease must be/],
      [{ lease: 1e12 }, /^lease must be at most/],
      [{ onInProgress: 'retry' }, /^onInProgress must be 'reject' or 'wait'/],
      [{ releaseIf: true }, /^releaseIf must be a function/],
      [{ definitive: 'yes' }, /^definitive must be a function/],
      [{ exclude: 'traceId' }, /^exclude must be an array of strings/],
      [{ exclude: [1] }, /^exclude must be an array of strings/],
      [{ fingerprint: 42 }, /^fingerprint must be a string/],
      [{ scope: [1] }, /^scope/],
    ];
    let ran = 0;
    for (const [opts, message] of bad) {
      const err = await idem.run('k', () => ran++, opts as never).catch((e) => e);
      expect(err, JSON.stringify(opts)).toBeInstanceOf(InvalidOptionError);
      expect(err.message, JSON.stringify(opts)).toMatch(message);
    }
    expect(ran).toBe(0);
  });

  it('createIdem checks the same rules for its defaults and hooks', () => {
    const store = memoryStore();
    expect(() => createIdem({ store, ttl: 0 })).toThrow(/^ttl must be more than 0/);
    expect(() => createIdem({ store, waitTimeout: -5 })).toThrow(/^waitTimeout must be/);
    expect(() => createIdem({ store, onEvent: 'log' as never })).toThrow(/^onEvent must be a function/);
    expect(() => createIdem({ store, definitive: {} as never })).toThrow(/^definitive must be a function/);
    expect(() => createIdem({ store, maxOutcomeBytes: -1 })).toThrow(/^maxOutcomeBytes must be/);
  });

  it('resolveRunOptions names the option under the caller label and answers milliseconds', () => {
    expect(resolveRunOptions({ lease: '2s', ttl: '1h', waitTimeout: 0, onInProgress: 'wait' })).toEqual({
      leaseMs: 2000,
      ttlMs: 3_600_000,
      waitMs: 0,
      onInProgress: 'wait',
    });
    expect(resolveRunOptions({})).toEqual({});
    expect(resolveRunOptions(undefined)).toEqual({});
    expect(() => resolveRunOptions({ lease: 0 }, 'routes[0]')).toThrow(
      /^routes\[0\]\.lease must be at least 50 ms/,
    );
    expect(() => resolveRunOptions({ onInProgress: 'x' as never }, 'middleware')).toThrow(
      /^middleware\.onInProgress must be/,
    );
    expect(() => resolveRunOptions('30s' as never, 'routes[1]')).toThrow(/^routes\[1\] must be an object/);
  });
});

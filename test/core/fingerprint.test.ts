/**
 * Fingerprints of parsed JSON: `__proto__` is data, malformed input is a typed 400, and
 * exclusions with `*` in any position drop what they name.
 */
import {
  canonicalJson,
  createIdem,
  FingerprintMismatchError,
  fingerprintOf,
  InvalidInputError,
  MAX_INPUT_DEPTH,
  memoryStore,
} from 'idem';
import { describe, expect, it } from 'vitest';

describe('__proto__ is an ordinary key', () => {
  it('inputs that differ only under __proto__ fingerprint differently', () => {
    const a = JSON.parse('{"__proto__":{"amount":1}}');
    const b = JSON.parse('{"__proto__":{"amount":99999}}');
    const fps = new Set([fingerprintOf(a), fingerprintOf(b), fingerprintOf({})]);
    expect(fps.size).toBe(3);
    expect(canonicalJson(a)).toBe('{"__proto__":{"amount":1}}');
    expect(canonicalJson(JSON.parse('{"b":1,"__proto__":[1,{"__proto__":2}],"a":0}'))).toBe(
      '{"__proto__":[1,{"__proto__":2}],"a":0,"b":1}',
    );
  });

  it('a changed body under __proto__ is refused, not replayed', async () => {
    const idem = createIdem({ store: memoryStore() });
    let runs = 0;
    await idem.run('pay', () => ++runs, { input: JSON.parse('{"__proto__":{"amount":1}}') });
    const err = await idem
      .run('pay', () => ++runs, { input: JSON.parse('{"__proto__":{"amount":99999}}') })
      .catch((e) => e);
    expect(err).toBeInstanceOf(FingerprintMismatchError);
    expect(runs).toBe(1);
  });

  it('fingerprints of ordinary objects are unchanged (stored records keep matching)', () => {
    expect(canonicalJson({ b: [1, 'x', null, true], a: { d: 1.5, c: -0 } })).toBe(
      '{"a":{"c":0,"d":1.5},"b":[1,"x",null,true]}',
    );
    expect(fingerprintOf({ a: 1 })).toBe('015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862');
  });
});

describe('inputs that cannot be fingerprinted are an InvalidInputError (400)', () => {
  it('a lone surrogate, in a value or a key', () => {
    for (const text of ['{"a":"\\ud800"}', '{"\\udc00":1}', '["ok","\\ud83d"]']) {
      const err = (() => {
        try {
          return fingerprintOf(JSON.parse(text));
        } catch (e) {
          return e;
        }
      })();
      expect(err, text).toBeInstanceOf(InvalidInputError);
      expect((err as InvalidInputError).status).toBe(400);
      expect((err as Error).message).toMatch(/surrogate/);
    }
    expect(fingerprintOf({ a: '🚀 ok' })).toMatch(/^[0-9a-f]{64}$/); // paired surrogates are fine
  });

  it('JSON nested past MAX_INPUT_DEPTH, and cycles', () => {
    const deep = JSON.parse(`${'['.repeat(10_000)}${']'.repeat(10_000)}`);
    expect(() => fingerprintOf(deep)).toThrow(InvalidInputError);
    expect(() => fingerprintOf(deep)).toThrow(new RegExp(`deeper than ${MAX_INPUT_DEPTH}`));
    const objects = JSON.parse(`${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`);
    expect(() => fingerprintOf(objects)).toThrow(InvalidInputError);
    const ok = JSON.parse(`${'['.repeat(MAX_INPUT_DEPTH)}${']'.repeat(MAX_INPUT_DEPTH)}`);
    expect(fingerprintOf(ok)).toMatch(/^[0-9a-f]{64}$/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => fingerprintOf(cyclic)).toThrow(InvalidInputError);
  });

  it('the engine refuses such an input before claiming', async () => {
    const store = memoryStore();
    const idem = createIdem({ store });
    let ran = false;
    const err = await idem
      .run('k', () => (ran = true), { input: JSON.parse('{"a":"\\ud800"}') })
      .catch((e) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(ran).toBe(false);
    expect(await store.get(idem.ids('k').recordId)).toBeUndefined();
  });
});

describe('exclusions with * in every position', () => {
  const input = {
    traceId: 't1',
    meta: { sentAt: 1, traceId: 'x' },
    items: [
      { sku: 'a', nonce: 1 },
      { sku: 'b', nonce: 2 },
    ],
  };
  it('a trailing * drops every child', () => {
    expect(canonicalJson(input, ['meta.*'])).toBe(
      '{"items":[{"nonce":1,"sku":"a"},{"nonce":2,"sku":"b"}],"meta":{},"traceId":"t1"}',
    );
    expect(canonicalJson(input, ['items.*'])).toBe(
      '{"items":[],"meta":{"sentAt":1,"traceId":"x"},"traceId":"t1"}',
    );
    expect(canonicalJson(input, ['*'])).toBe('{}');
    expect(canonicalJson([1, 2], ['*'])).toBe('[]');
  });
  it('a * in the middle or first drops the named child of each', () => {
    expect(canonicalJson(input, ['items.*.nonce'])).toBe(
      '{"items":[{"sku":"a"},{"sku":"b"}],"meta":{"sentAt":1,"traceId":"x"},"traceId":"t1"}',
    );
    expect(canonicalJson(input, ['*.traceId'])).toBe(
      '{"items":[{"nonce":1,"sku":"a"},{"nonce":2,"sku":"b"}],"meta":{"sentAt":1},"traceId":"t1"}',
    );
    expect(canonicalJson({ a: { b: { c: 1, d: 2 } } }, ['*.*.c'])).toBe('{"a":{"b":{"d":2}}}');
  });
  it('a changed trace id under an excluded meta.* replays instead of mismatching', async () => {
    const idem = createIdem({ store: memoryStore() });
    let runs = 0;
    const opts = (sentAt: number) => ({ input: { amount: 5, meta: { sentAt } }, exclude: ['meta.*'] });
    expect(await idem.run('k', () => ++runs, opts(1))).toBe(1);
    expect(await idem.run('k', () => ++runs, opts(2))).toBe(1);
    expect(runs).toBe(1);
  });
});

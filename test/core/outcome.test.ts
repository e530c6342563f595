import { describe, expect, it } from 'vitest';
import { decodeOutcome, encodeOutcome } from '../../src/core/outcome.ts';

const roundTrip = (value: unknown) => {
  const encoded = encodeOutcome({ kind: 'value', value });
  const decoded = decodeOutcome(encoded);
  return { encoded, value: decoded.kind === 'value' ? decoded.value : undefined };
};

describe('outcome encoding', () => {
  it('plain JSON takes the JSON fast path and round-trips', () => {
    for (const v of [
      null,
      true,
      'é\u{1F680}\ud800',
      0,
      1.5,
      [1, [2, { a: 'b' }]],
      { a: { b: [] }, __proto__x: 1 },
    ]) {
      const r = roundTrip(v);
      expect(r.encoded.startsWith('j1:')).toBe(true);
      expect(r.value).toStrictEqual(v);
    }
  });

  it('anything JSON would change goes through devalue and round-trips exactly', () => {
    const cases: unknown[] = [
      undefined,
      -0,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      10n,
      new Date(5),
      new Uint8Array([1, 2]),
      new Map([[1, 2]]),
      new Set(['a']),
      [1, undefined, 3],
      Object.assign(new Array(3), { 0: 1, 2: 3 }), // sparse: index 1 is a hole
      { a: undefined },
      { toJSON: 'not a function but still special' },
      Object.assign(Object.create(null), { a: 1 }),
    ];
    for (const [i, v] of cases.entries()) {
      const r = roundTrip(v);
      expect(r.encoded.startsWith('i1:'), `case ${i}`).toBe(true);
      if (typeof v === 'number' && Number.isNaN(v)) expect(Number.isNaN(r.value)).toBe(true);
      else if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === null)
        expect({ ...(r.value as object) }).toEqual({ a: 1 });
      else expect(Object.is(r.value, v) || JSON.stringify(r.value) === JSON.stringify(v)).toBe(true);
    }
    expect(Object.is(roundTrip(-0).value, -0)).toBe(true);
    expect(roundTrip([1, undefined, 3]).value).toStrictEqual([1, undefined, 3]);
  });

  it('deeply nested values fall back to devalue instead of overflowing', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 100; i++) deep = { d: deep };
    const r = roundTrip(deep);
    expect(r.encoded.startsWith('i1:')).toBe(true);
    expect(r.value).toStrictEqual(deep);
  });

  it('refuses unknown encodings instead of guessing', () => {
    expect(() => decodeOutcome('x9:{}')).toThrow(/unknown outcome encoding/);
  });
});

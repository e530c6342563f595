import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/core/errors.ts';
import { parseJsonExact } from '../../src/core/json.ts';
import { canonicalJson, fingerprintOf } from '../../src/core/keys.ts';

const fp = (text: string) => fingerprintOf(parseJsonExact(text));

describe('parseJsonExact: numbers a double cannot hold keep their value', () => {
  it('bodies that differ only in an out-of-range or over-precise number fingerprint differently', () => {
    expect(fp('{"n":1e400}')).not.toBe(fp('{"n":2e400}'));
    expect(fp('{"id":12345678901234567891}')).not.toBe(fp('{"id":12345678901234567890}'));
    expect(fp('{"x":0.10000000000000000001}')).not.toBe(fp('{"x":0.1}'));
    expect(fp('[-1e-400]')).not.toBe(fp('[-2e-400]'));
  });

  it('over-precise numbers whose digits a decimal point splits fingerprint differently too', () => {
    // 18 significant digits, never 16 in a row: both parse to the same double
    expect(JSON.parse('123.456789012345678')).toBe(JSON.parse('123.456789012345679'));
    expect(fp('{"amount":123.456789012345678}')).not.toBe(fp('{"amount":123.456789012345679}'));
    expect(fp('{"n":1234567.8901234567891}')).not.toBe(fp('{"n":1234567.8901234567892}'));
    expect(fp('{"n":12345678.9012345678e10}')).not.toBe(fp('{"n":12345678.9012345679e10}'));
    // 15 significant digits still parse as plain numbers
    expect(parseJsonExact('{"n":1234567.89012345}')).toEqual({ n: 1234567.89012345 });
  });

  it('numbers a double holds exactly fingerprint as before, whatever their spelling', () => {
    const plain = (text: string) => fingerprintOf(JSON.parse(text));
    for (const text of [
      '{"n":1.0}',
      '{"n":150}',
      '[1e2,0.1,-0,1234567890123456]',
      '{"s":"1e400 in a string"}',
    ]) {
      expect(fp(text)).toBe(plain(text));
    }
    expect(fp('{"n":1.50e2}')).toBe(fp('{"n":150}'));
    expect(fp('{"big":1234567890123456789e3}')).toBe(fp('{"big":1.234567890123456789e21}'));
  });

  it('keeps the exact value as a canonical tag', () => {
    expect(parseJsonExact('{"id":12345678901234567891}')).toEqual({
      id: { $decimal: '12345678901234567891e0' },
    });
    expect(canonicalJson(parseJsonExact('[1e400]'))).toBe('[{"$decimal":"1e400"}]');
  });

  it('invalid JSON is a SyntaxError; JSON too deep to walk is an InvalidInputError', () => {
    expect(() => parseJsonExact('{"n":1e400')).toThrow(SyntaxError);
    const deep = `${'['.repeat(20_000)}1e400${']'.repeat(20_000)}`;
    expect(() => parseJsonExact(deep)).toThrow(InvalidInputError);
  });
});

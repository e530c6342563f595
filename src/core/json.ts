/**
 * JSON parsing for fingerprints that keeps what `JSON.parse` would lose: a number whose
 * decimal text a double cannot hold (`12345678901234567891`, `1e400`, `0.1000000000000000001`)
 * comes back as `{ $decimal: '<exact digits>e<exponent>' }`, so two bodies that differ only
 * in such a number never fingerprint alike.
 *
 * @module
 */
import { InvalidInputError } from './errors.ts';

/**
 * Numbers that may not survive a double: 16+ digits (a double holds any 15), counted across a
 * decimal point (`123.456789012345678`), or a 3-digit exponent. A false alarm only costs the
 * slower exact parse.
 */
const MAYBE_LOSSY = /\d(?:\.?\d){15}|[eE][+-]?\d{3}/;

/**
 * `JSON.parse`, except that numbers a double cannot hold exactly are kept as
 * `{ $decimal }` tags (their exact value, canonical: `1.50e2` and `150` are the same).
 * Throws `SyntaxError` for invalid JSON and `InvalidInputError` for JSON nested too deep to walk.
 *
 * @example
 * parseJsonExact('{"id":12345678901234567891}') // { id: { $decimal: '12345678901234567891e0' } }
 * parseJsonExact('{"n":1.0}') // { n: 1 }
 */
export function parseJsonExact(text: string): unknown {
  if (!MAYBE_LOSSY.test(text)) return JSON.parse(text);
  try {
    return JSON.parse(text, keepExactNumbers);
  } catch (error) {
    if (error instanceof RangeError) {
      throw new InvalidInputError('the JSON is nested too deeply to be fingerprinted', { cause: error });
    }
    throw error;
  }
}

function keepExactNumbers(this: unknown, _key: string, value: unknown, context?: { source?: string }) {
  if (typeof value !== 'number' || context?.source === undefined) return value;
  const exact = exactDecimal(context.source);
  return exact === exactDecimal(String(value)) ? value : { $decimal: exact };
}

/** The exact value of a JSON number (or of `String(double)`) as `[-]digits` + `e` + exponent. */
function exactDecimal(text: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m) return text; // 'Infinity' and the like: compared as written
  const [, sign = '', int = '', frac = '', exp = '0'] = m;
  let digits = (int + frac).replace(/^0+/, '');
  if (digits === '') return '0e0';
  let exponent = BigInt(exp) - BigInt(frac.length);
  const trimmed = digits.replace(/0+$/, '');
  exponent += BigInt(digits.length - trimmed.length);
  digits = trimmed;
  return `${sign}${digits}e${exponent}`;
}

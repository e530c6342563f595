/**
 * Parsing the `Idempotency-Key` request header.
 *
 * The IETF draft makes the field an Item Structured Field whose value is an sf-string
 * (`Idempotency-Key: "8e03…"`); most providers (Stripe, Adyen…) send a bare token instead.
 * Both are accepted and mean the same key: `"k"` and `k` are one key.
 *
 * Rejected (HTTP 400 `invalid-key`):
 * - more than one field line, or a comma-separated list (the Fetch `Headers` class joins
 *   repeated field lines with `", "`, so both look like a list here);
 * - an empty value, or one over `maxKeyLength` (default 255) characters after unescaping;
 * - any character outside printable ASCII without space (`0x21`–`0x7E`);
 * - a quoted value that is not a valid sf-string (unterminated, a bad escape, trailing
 *   parameters or junk).
 *
 * @module
 */
import { createHash } from 'node:crypto';

/**
 * Longest accepted key, in characters (Stripe's limit).
 *
 * @example
 * parseIdempotencyKey('k'.repeat(MAX_HTTP_KEY_LENGTH + 1)).ok // false
 */
export const MAX_HTTP_KEY_LENGTH = 255;

/** Why a key was rejected. Stable strings, used in the problem `detail`. */
export type KeyRejection = 'empty' | 'list' | 'too-long' | 'characters' | 'syntax';

/** What {@link parseIdempotencyKey} answers. */
export type ParsedKey = { ok: true; key: string } | { ok: false; reason: KeyRejection; detail: string };

const DETAIL: Record<Exclude<KeyRejection, 'too-long'>, string> = {
  empty: 'the Idempotency-Key field is empty',
  list: 'send exactly one Idempotency-Key field line with one value, not a list',
  characters: 'the Idempotency-Key may only contain printable ASCII characters 0x21-0x7E (no spaces)',
  syntax:
    'the Idempotency-Key is not a valid Structured Field string: use "quoted" with \\" and \\\\ escapes, or a bare token',
};

const reject = (reason: Exclude<KeyRejection, 'too-long'>): ParsedKey => ({
  ok: false,
  reason,
  detail: DETAIL[reason],
});

/**
 * Parses one `Idempotency-Key` field value: an sf-string (quoted, `\"` and `\\` unescaped) or a
 * bare token. Pass the value as `Headers.get()` returns it.
 *
 * @example
 * parseIdempotencyKey('"a\\"b"')  // { ok: true, key: 'a"b' }
 * parseIdempotencyKey('abc')       // { ok: true, key: 'abc' }
 * parseIdempotencyKey('a, b')      // { ok: false, reason: 'list', detail: '…' }
 * parseIdempotencyKey('k'.repeat(300), 512).ok // true (a raised maxKeyLength)
 */
export function parseIdempotencyKey(fieldValue: string, maxLength = MAX_HTTP_KEY_LENGTH): ParsedKey {
  const value = fieldValue.replace(/^[ \t]+|[ \t]+$/g, '');
  if (value === '') return reject('empty');
  let key: string;
  if (value.startsWith('"')) {
    const parsed = parseSfString(value);
    if (typeof parsed !== 'string') return parsed;
    key = parsed;
  } else {
    if (value.includes(',')) return reject('list');
    key = value;
  }
  if (key === '') return reject('empty');
  if (key.length > maxLength) {
    return {
      ok: false,
      reason: 'too-long',
      detail: `the Idempotency-Key is longer than ${maxLength} characters`,
    };
  }
  if (!/^[\x21-\x7e]+$/.test(key)) return reject('characters');
  return { ok: true, key };
}

/** RFC 8941 §4.2.5, for a value that starts with a double quote. */
function parseSfString(value: string): string | ParsedKey {
  let out = '';
  let i = 1;
  for (;;) {
    if (i >= value.length) return reject('syntax');
    const c = value[i] as string;
    if (c === '\\') {
      const next = value[i + 1];
      if (next !== '"' && next !== '\\') return reject('syntax');
      out += next;
      i += 2;
    } else if (c === '"') {
      i++;
      break;
    } else {
      const code = c.charCodeAt(0);
      if (code < 0x20 || code > 0x7e) return reject('characters');
      out += c;
      i++;
    }
  }
  const rest = value.slice(i).replace(/^[ \t]+/, '');
  if (rest === '') return out;
  return rest.startsWith(',') ? reject('list') : reject('syntax');
}

/**
 * The key handed to the engine: the key itself up to the engine's 255 characters, else
 * `sha256:` + its hex digest (a raised `maxKeyLength`). Keys are hashed into record ids anyway.
 *
 * @example
 * engineKey('k'.repeat(300)) // 'sha256:…' (71 characters)
 */
export function engineKey(key: string): string {
  if (key.length <= MAX_HTTP_KEY_LENGTH) return key;
  return `sha256:${createHash('sha256').update(key).digest('hex')}`;
}

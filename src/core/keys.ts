/**
 * Keys, scopes, record ids and fingerprints. Raw keys never reach a store: the record id is
 * a SHA-256 over the scope and the key.
 *
 * @module
 */
import { hash, timingSafeEqual } from 'node:crypto';
import canonicalize from 'canonicalize';
import { InvalidInputError, InvalidKeyError, InvalidOptionError } from './errors.ts';

const PRINTABLE = /^[\x20-\x7e]+$/;
export const MAX_KEY_LENGTH = 255;
/**
 * The deepest nesting of objects and arrays an input may have to be fingerprinted; deeper
 * (or cyclic) inputs are an `InvalidInputError`, never a stack overflow.
 */
export const MAX_INPUT_DEPTH = 1000;

/** Throws `InvalidKeyError` unless `key` is 1–255 printable ASCII characters. */
export function validateKey(key: unknown, what = 'idempotency key'): string {
  if (typeof key !== 'string') throw new InvalidKeyError(`${what} must be a string, got ${typeof key}`);
  if (key.length === 0) throw new InvalidKeyError(`${what} must not be empty`);
  if (key.length > MAX_KEY_LENGTH) {
    throw new InvalidKeyError(`${what} is ${key.length} characters; the limit is ${MAX_KEY_LENGTH}`);
  }
  if (!PRINTABLE.test(key)) throw new InvalidKeyError(`${what} must be printable ASCII (0x20-0x7E)`);
  return key;
}

/**
 * RFC 8785 canonical JSON of `value`, after turning the values JSON cannot carry into tagged
 * objects (bigint, Uint8Array, Map, Set, undefined in arrays) and dropping `exclude` paths.
 * Own keys only, `__proto__` included as data (as `JSON.parse` makes it). Throws
 * `InvalidInputError` for a string with a lone surrogate, or nesting past `MAX_INPUT_DEPTH`.
 *
 * @example
 * canonicalJson({ b: 1, a: { traceId: 'x', n: 2 } }, ['a.traceId']) // '{"a":{"n":2},"b":1}'
 */
export function canonicalJson(value: unknown, exclude: readonly string[] = []): string {
  const normalized = normalize(value, 0);
  for (const path of exclude) dropPath(normalized, path.split('.'));
  return canonicalize(normalized) ?? 'null';
}

/**
 * The fingerprint of an input: hex SHA-256 of its canonical JSON.
 *
 * @example
 * fingerprintOf({ b: 1, a: 2 }) === fingerprintOf({ a: 2, b: 1 }) // true
 */
export function fingerprintOf(input: unknown, exclude: readonly string[] = []): string {
  return hash('sha256', canonicalJson(input, exclude), 'hex');
}

/**
 * A deterministic key from a namespace and business identifiers:
 * `namespace:` + hex SHA-256 of the canonical JSON of `parts`.
 *
 * @example
 * deriveKey('pay', ['CLAIM-12345', 1240.55]) // 'pay:5f2c…'
 */
export function deriveKey(namespace: string, parts: readonly unknown[]): string {
  validateKey(namespace, 'key namespace');
  if (namespace.length > MAX_KEY_LENGTH - 65) {
    throw new InvalidKeyError(`key namespace is over ${MAX_KEY_LENGTH - 65} characters`);
  }
  return `${namespace}:${fingerprintOf(parts)}`;
}

/**
 * Scope parts as strings (a string is one part); anything else is an InvalidOptionError.
 *
 * @example
 * scopeParts('tenant-a') // ['tenant-a']
 * scopeParts(['tenant-a', 'user-7']) // ['tenant-a', 'user-7']
 */
export function scopeParts(scope: string | readonly string[] | undefined): string[] {
  if (scope === undefined) return [];
  const parts = typeof scope === 'string' ? [scope] : [...scope];
  for (const p of parts)
    if (typeof p !== 'string') throw new InvalidOptionError('scope parts must be strings');
  return parts;
}

/** The stored record id: base64url SHA-256 over the scope parts and the key. */
export function recordIdOf(scope: readonly string[], key: string): string {
  return recordIdFrom(recordIdPrefix(scope), key);
}

/**
 * What {@link recordIdOf} hashes before the key, for a fixed scope: build it once, then
 * `recordIdFrom(prefix, key)` hashes one string per call. The hashed text is the JSON array of
 * the scope parts and the key, as it always was, so record ids do not change.
 *
 * @example
 * const prefix = recordIdPrefix(['tenant-a']); // '["tenant-a",'
 * recordIdFrom(prefix, 'order-1') === recordIdOf(['tenant-a'], 'order-1') // true
 */
export function recordIdPrefix(scope: readonly string[]): string {
  return scope.length === 0 ? '[' : `${JSON.stringify(scope).slice(0, -1)},`;
}

/**
 * `recordIdFrom(prefix, key)` remembering at least its last `size` answers, so a key seen
 * again (a retry, a replay) is not hashed again. Bounded: at most `2 × size` keys of at most
 * 255 characters each and their ids.
 *
 * @example
 * const idOf = recordIdMemo('[', 1024);
 * idOf('order-1') === recordIdOf([], 'order-1') // true, and the second call does not hash
 */
export function recordIdMemo(prefix: string, size: number): (key: string) => string {
  return lastAnswers(size, (key) => recordIdFrom(prefix, key));
}

/** The record id of `key` under a prefix from {@link recordIdPrefix}. */
export function recordIdFrom(prefix: string, key: string): string {
  return hash('sha256', `${prefix}${JSON.stringify(key)}]`, 'base64url');
}

/**
 * The scope hash kept with a record for operators (`idem keys list --scope …`): base64url
 * SHA-256 of the scope parts (not the key), 22 characters; '' for no scope. It names a scope
 * without storing its parts, which may hold tenant names or credential hashes.
 *
 * @example
 * scopeHashOf(['tenant-a']) // 'Qm9…' (22 characters)
 * scopeHashOf([]) // ''
 */
export function scopeHashOf(scope: readonly string[]): string {
  return scope.length === 0 ? '' : scopeHashFrom(recordIdPrefix(scope));
}

/** {@link scopeHashOf} from the scope's {@link recordIdPrefix} (built once per call anyway). */
export function scopeHashFrom(prefix: string): string {
  return prefix === '[' ? '' : hash('sha256', `scope:${prefix}`, 'base64url').slice(0, 22);
}

/**
 * `scopeHashFrom` remembering at least its last `size` answers, so the scopes a service sees again (its
 * tenants, its callers' credentials) are not hashed on every call.
 *
 * @example
 * const scopeHash = scopeHashMemo(256);
 * scopeHash(recordIdPrefix(['tenant-a'])) === scopeHashOf(['tenant-a']) // true
 */
export function scopeHashMemo(size: number): (prefix: string) => string {
  return lastAnswers(size, scopeHashFrom);
}

/** The key handed to downstream APIs: stable per record across attempts and takeovers. */
export function downstreamKeyOf(recordId: string): string {
  return `idem_${hash('sha256', `downstream:${recordId}`, 'base64url').slice(0, 40)}`;
}

/** Constant-time comparison of two fingerprints. */
export function sameFingerprint(a: string, b: string): boolean {
  if (a.length !== b.length) return false; // lengths are not secret: fingerprints are fixed-size hashes
  if (a.length === 0) return true;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

// --- Internal helpers ---

/**
 * `fn` remembering at least its last `size` answers and at most `2 × size`, in two generations:
 * when the current map is full it becomes the previous one and the one before is dropped; a hit
 * in the previous generation moves to the current one. Every call is O(1). (Evicting the oldest
 * entry of one Map through `keys().next()` walks over the deleted entries at its head, which cost
 * a fresh key 0.5–3 µs per call.)
 */
function lastAnswers(size: number, fn: (input: string) => string): (input: string) => string {
  let current = new Map<string, string>();
  let previous = new Map<string, string>();
  return (input) => {
    let answer = current.get(input);
    if (answer !== undefined) return answer;
    answer = previous.get(input) ?? fn(input);
    if (current.size >= size) {
      previous = current;
      current = new Map();
    }
    current.set(input, answer);
    return answer;
  };
}

/**
 * A JSON-ready copy of `value`. Objects come out without a prototype, so a `__proto__` key is
 * kept as an own property (an ordinary object would turn it into its prototype and drop it).
 */
function normalize(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'string') return wellFormed(value);
    if (typeof value === 'function' || typeof value === 'symbol') {
      // JSON would drop it: every such input would fingerprint alike and payload checks pass
      throw new InvalidInputError(
        `the input holds a ${typeof value}, which cannot be fingerprinted: pass the data (adapters take input: (msg) => data)`,
      );
    }
    if (typeof value === 'bigint') return { $bigint: value.toString() };
    if (typeof value === 'number' && !Number.isFinite(value)) return { $number: String(value) };
    return value;
  }
  if (++depth > MAX_INPUT_DEPTH) {
    throw new InvalidInputError(
      `the input is nested deeper than ${MAX_INPUT_DEPTH} levels (or refers to itself): it cannot be fingerprinted`,
    );
  }
  if (value instanceof Date) return { $date: value.getTime() };
  if (ArrayBuffer.isView(value)) {
    return { $bytes: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  }
  if (value instanceof Map) {
    return { $map: [...value].map(([k, v]) => [normalize(k, depth), normalize(v, depth)]) };
  }
  if (value instanceof Set) return { $set: [...value].map((v) => normalize(v, depth)) };
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : normalize(v, depth)));
  const out: Record<string, unknown> = Object.create(null);
  for (const k of Object.keys(value)) {
    const v = (value as Record<string, unknown>)[k];
    if (v !== undefined) out[wellFormed(k)] = normalize(v, depth);
  }
  return out;
}

/** RFC 8785 refuses lone surrogates: they have no UTF-8 form, so two inputs could hash alike. */
function wellFormed(s: string): string {
  if (s.isWellFormed()) return s;
  throw new InvalidInputError(
    'the input holds a string with a lone surrogate (not well-formed Unicode): it cannot be fingerprinted',
  );
}

/** Deletes what `path` names; `*` stands for every key or index at its level. */
function dropPath(target: unknown, path: string[]): void {
  if (target === null || typeof target !== 'object' || path.length === 0) return;
  const [head, ...rest] = path as [string, ...string[]];
  const obj = target as Record<string, unknown>;
  if (head !== '*') {
    if (rest.length === 0) delete obj[head];
    else dropPath(obj[head], rest);
  } else if (rest.length > 0) {
    for (const child of Object.values(obj)) dropPath(child, rest);
  } else if (Array.isArray(obj)) {
    obj.length = 0;
  } else {
    for (const k of Object.keys(obj)) delete obj[k];
  }
}

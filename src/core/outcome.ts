/**
 * How outcomes are stored: a versioned envelope serialized with `devalue`, so values round-trip
 * exactly (JSON plus Date, Uint8Array, BigInt, undefined, Map, Set, -0, NaN) and parsing never
 * evaluates code.
 *
 * @module
 */
import * as devalue from 'devalue';

const DEFINITIVE = Symbol.for('idem.definitive');

/** What a stored outcome decodes to. */
export type Outcome =
  | { kind: 'value'; value: unknown }
  | { kind: 'error'; error: SerializedError }
  | { kind: 'too_large'; bytes: number; limit: number };

/** An error as stored: its name, message and own enumerable data properties. */
export interface SerializedError {
  name: string;
  message: string;
  props: Record<string, unknown>;
}

const VERSION = 'i1:';
/** Plain JSON values (the common case) skip devalue: `j1:` + JSON, parsed with JSON.parse. */
const JSON_VERSION = 'j1:';

/** Encodes an outcome for the store. Throws when the value cannot be serialized (a function, a class instance). */
export function encodeOutcome(outcome: Outcome): string {
  if (outcome.kind === 'value' && isPlainJson(outcome.value, 0))
    return JSON_VERSION + JSON.stringify(outcome.value);
  return VERSION + devalue.stringify(outcome);
}

/**
 * The value of a stored plain-JSON outcome (`j1:`), or `NOT_PLAIN` for anything else (decode
 * that with {@link decodeOutcome}): the replay path's shortcut, without an envelope object.
 *
 * @example
 * const value = plainValueOf(stored);
 * if (value === NOT_PLAIN) return fromOutcome(decodeOutcome(stored));
 */
export function plainValueOf(stored: string): unknown {
  return stored.startsWith(JSON_VERSION) ? JSON.parse(stored.slice(JSON_VERSION.length)) : NOT_PLAIN;
}
export const NOT_PLAIN: unique symbol = Symbol('not a plain JSON outcome');

/** Decodes what {@link encodeOutcome} produced. */
export function decodeOutcome(stored: string): Outcome {
  if (stored.startsWith(JSON_VERSION))
    return { kind: 'value', value: JSON.parse(stored.slice(JSON_VERSION.length)) };
  if (!stored.startsWith(VERSION)) throw new Error(`unknown outcome encoding: ${stored.slice(0, 8)}`);
  return devalue.parse(stored.slice(VERSION.length)) as Outcome;
}

/**
 * True when JSON.stringify → JSON.parse gives back an equal value: null, booleans, strings,
 * finite numbers other than -0, dense arrays and plain objects of those (no undefined, no
 * toJSON, no prototypes), at most 64 levels deep. Anything else goes through devalue.
 */
function isPlainJson(v: unknown, depth: number): boolean {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v) && !Object.is(v, -0);
  if (typeof v !== 'object' || depth > 64) return false;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!(i in v) || !isPlainJson(v[i], depth + 1)) return false;
    return true;
  }
  if (Object.getPrototypeOf(v) !== Object.prototype) return false;
  for (const k in v) {
    if (
      !Object.hasOwn(v, k) ||
      k === 'toJSON' ||
      !isPlainJson((v as Record<string, unknown>)[k], depth + 1)
    ) {
      return false;
    }
  }
  return true;
}

/**
 * Marks an error as definitive: instead of releasing the key, idem stores it and every later
 * call with the key gets the same error (by name, message and data properties).
 *
 * @example
 * await idem.run(key, async () => {
 *   const res = await charge();
 *   if (res.declined) throw definitive(new Error('card declined'));
 *   return res.id;
 * });
 */
export function definitive<E extends Error>(error: E): E {
  Object.defineProperty(error, DEFINITIVE, { value: true, enumerable: false });
  return error;
}

/** True when `error` was marked with {@link definitive}. */
export function isDefinitive(error: unknown): boolean {
  return (
    typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[DEFINITIVE] === true
  );
}

/**
 * True when a thrown error is final, so it is stored (or a message parked) rather than retried:
 * marked with {@link definitive}, or accepted by one of the `classifiers`. A classifier that
 * throws counts as "no": a broken classifier must never turn a transient failure into a stored one.
 *
 * @example
 * isDefinitiveFailure(err, options.definitive, (e) => (e as { status?: number }).status === 400)
 */
export function isDefinitiveFailure(
  error: unknown,
  ...classifiers: Array<((e: unknown) => boolean) | undefined>
): boolean {
  if (isDefinitive(error)) return true;
  for (const classify of classifiers) {
    try {
      if (classify?.(error) === true) return true;
    } catch {
      // a broken classifier: the error stays transient
    }
  }
  return false;
}

/** Captures an error's name, message and serializable own properties. */
export function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error))
    return { name: 'Error', message: String(error), props: { thrown: safe(error) } };
  const props: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(error)) {
    const s = safe(v);
    if (s !== undefined) props[k] = s;
  }
  return { name: error.name, message: error.message, props };
}

/** Rebuilds a stored error as an `Error` with the same name, message and properties, marked `replayed`. */
export function reviveError(e: SerializedError): Error {
  const error = new Error(e.message);
  Object.assign(error, e.props);
  Object.defineProperty(error, 'name', {
    value: e.name,
    enumerable: false,
    configurable: true,
    writable: true,
  });
  Object.defineProperty(error, 'replayed', { value: true, enumerable: false });
  return definitive(error);
}

function safe(v: unknown): unknown {
  try {
    devalue.stringify(v);
    return v;
  } catch {
    return undefined;
  }
}

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

/** Encodes an outcome for the store. Throws when the value cannot be serialized (a function, a class instance). */
export function encodeOutcome(outcome: Outcome): string {
  return VERSION + devalue.stringify(outcome);
}

/** Decodes what {@link encodeOutcome} produced. */
export function decodeOutcome(stored: string): Outcome {
  if (!stored.startsWith(VERSION)) throw new Error(`unknown outcome encoding: ${stored.slice(0, 8)}`);
  return devalue.parse(stored.slice(VERSION.length)) as Outcome;
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

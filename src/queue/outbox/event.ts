/**
 * Event ids (UUIDv7: time-ordered, so they index well) and the checks `outbox.add` runs on
 * an event before it writes anything.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { InvalidInputError, InvalidOptionError } from '../../core/errors.ts';
import { nearestName } from '../../core/names.ts';
import type { NewOutboxEvent } from './types.ts';

/**
 * A fresh UUIDv7 (RFC 9562): 48 bits of epoch ms, then random bits.
 *
 * @example
 * uuidv7() // '01938f6e-6c2a-7b1e-9f4d-2c5a7e0b3d41'
 */
export function uuidv7(now = Date.now()): string {
  const b = randomBytes(16);
  b.writeUIntBE(now, 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const KNOWN = ['id', 'topic', 'key', 'payload', 'headers', 'delayMs'];
const MAX_ID = 200;

/** A checked event, ready to insert: the payload as JSON text. */
export interface EventRow {
  id: string;
  topic: string;
  key: string | null;
  payload: string;
  headers: string;
  delayMs: number;
}

/**
 * Checks an event and serialises it, or throws `InvalidInputError` saying what is wrong.
 *
 * @example
 * toRow({ topic: 'claims.paid', key: 'claim-7', payload: { amount: 12 } }).id // a UUIDv7
 */
export function toRow(event: NewOutboxEvent): EventRow {
  if (event === null || typeof event !== 'object')
    throw new InvalidInputError('outbox.add: the event must be an object');
  for (const name of Object.keys(event)) {
    if (!KNOWN.includes(name)) {
      throw new InvalidInputError(`outbox.add: unknown event field ${name} (known: ${KNOWN.join(', ')})`);
    }
  }
  const { id = uuidv7(), topic, key, payload, headers = {}, delayMs = 0 } = event;
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID) {
    throw new InvalidInputError(`outbox.add: id must be a string of 1..${MAX_ID} characters`);
  }
  if (typeof topic !== 'string' || topic.length === 0) {
    throw new InvalidInputError('outbox.add: topic must be a non-empty string');
  }
  if (key !== undefined && (typeof key !== 'string' || key.length === 0)) {
    throw new InvalidInputError('outbox.add: key must be a non-empty string when given');
  }
  if (payload === undefined) throw new InvalidInputError('outbox.add: payload is required (null is allowed)');
  let text: string | undefined;
  try {
    text = JSON.stringify(payload);
  } catch (cause) {
    throw new InvalidInputError(`outbox.add: payload is not JSON: ${(cause as Error).message}`, { cause });
  }
  if (text === undefined) throw new InvalidInputError('outbox.add: payload is not JSON');
  if (
    headers === null ||
    typeof headers !== 'object' ||
    Object.values(headers).some((v) => typeof v !== 'string')
  ) {
    throw new InvalidInputError('outbox.add: headers must be an object of strings');
  }
  if (!(Number.isSafeInteger(delayMs) && delayMs >= 0)) {
    throw new InvalidInputError('outbox.add: delayMs must be a non-negative integer');
  }
  return { id, topic, key: key ?? null, payload: text, headers: JSON.stringify(headers), delayMs };
}

/** An SQL identifier option (table, schema): letters, digits and underscores. */
export function identifier(value: unknown, option: string): string {
  if (typeof value !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(value)) {
    throw new InvalidOptionError(
      `${option} must be an SQL identifier (letters, digits, _), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/**
 * Refuses option names the factory does not know, naming the closest known one.
 *
 * @example
 * checkOptions({ batchSzie: 10 }, ['batchSize'], 'createRelay') // throws: unknown option batchSzie — did you mean batchSize?
 */
export function checkOptions(options: object, known: readonly string[], where: string): void {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError(`${where}: options must be an object`);
  }
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    const near = nearestName(name, known);
    const hint = near ? ` — did you mean ${near}?` : ` (known: ${known.join(', ')})`;
    throw new InvalidOptionError(`${where}: unknown option ${name}${hint}`);
  }
}

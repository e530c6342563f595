/**
 * Records as DynamoDB items, and the item size DynamoDB counts (attribute names included).
 *
 * ```
 * <key>   S  the record id (partition key, 'id' by default)
 * s       S  state: 'p' in progress, 'c' completed
 * f       S  fingerprint          t  S  token ('' when released)
 * a       N  attempt              l  N  leaseUntil, epoch ms (0 once completed)
 * e       N  expiresAt, epoch ms  o  S  outcome (completed only)
 * j       N  1 when the outcome is stored JSON-escaped (it held a lone surrogate)
 * m       N  in progress: expiresAt − leaseUntil, so renew moves both in one SET
 * n       N  m in whole seconds (rounded up), so renew moves the TTL attribute too
 * b       N  createdAt, epoch ms: set by the claim that creates the record, kept by takeovers
 * d       N  completedAt, epoch ms (completed only)
 * h       S  scope hash (only when the claim had one)
 *            b, d and h are for inspect only, never read by a transition; items written before
 *            them have none (inspect answers 0, 0, '')
 * <ttl>   N  expiresAt in epoch seconds, rounded up ('expiration' by default): the table's TTL attribute
 * ```
 *
 * @module
 */
import type { StoreRecord } from '../../core/store.ts';

/** A DynamoDB attribute value, as the low-level client marshals it. */
export type AttributeValue = { S: string } | { N: string } | Record<string, unknown>;
/** An item: attribute name → value. */
export type Item = Record<string, AttributeValue>;

/** DynamoDB's item size limit: 400 KB, attribute names and values together. */
export const MAX_ITEM_BYTES = 400 * 1024;

/** The longest a number attribute can count (38 significant digits: 21 bytes). */
const NUMBER_BYTES = 21;

/** The record an item holds. */
export function toRecord(id: string, item: Item): StoreRecord {
  const completed = str(item.s) === 'c';
  const outcome = completed ? str(item.o) : undefined;
  return {
    id,
    state: completed ? 'completed' : 'in_progress',
    fingerprint: str(item.f),
    token: str(item.t),
    attempt: num(item.a),
    leaseUntil: num(item.l),
    expiresAt: num(item.e),
    outcome: outcome !== undefined && num(item.j) === 1 ? (JSON.parse(outcome) as string) : outcome,
  };
}

/** The scope hash an item keeps (`h`), '' when it has none. */
export function storedScopeHash(item: Item | undefined): string {
  return str(item?.h);
}

/**
 * `[text, escaped]` to store: DynamoDB strings are UTF-8, so a string with a lone surrogate
 * would come back altered; those travel JSON-escaped.
 */
export function encodeOutcome(outcome: string): [string, boolean] {
  return outcome.isWellFormed() ? [outcome, false] : [JSON.stringify(outcome), true];
}

/**
 * The size DynamoDB counts for a completed item: every attribute name and string value in
 * UTF-8 bytes, every number at its largest. `fingerprintBytes` and `scopeBytes` are guesses
 * when the caller does not know the claim; the server still refuses what does not fit.
 */
export function completedItemBytes(
  keyAttribute: string,
  ttlAttribute: string,
  id: string,
  token: string,
  fingerprintBytes: number,
  outcome: string,
  escaped: boolean,
  scopeBytes = 0,
): number {
  const names = `${keyAttribute}sftaleobd${ttlAttribute}${escaped ? 'j' : ''}${scopeBytes > 0 ? 'h' : ''}`;
  const numbers = (escaped ? 7 : 6) * NUMBER_BYTES; // a, l, e, b, d, ttl (and j)
  return (
    Buffer.byteLength(names) +
    Buffer.byteLength(id) +
    1 +
    fingerprintBytes +
    scopeBytes +
    Buffer.byteLength(token) +
    Buffer.byteLength(outcome) +
    numbers
  );
}

/** A string attribute value. */
export const S = (value: string): AttributeValue => ({ S: value });
/** A number attribute value. */
export const N = (value: number): AttributeValue => ({ N: String(value) });
/** Epoch ms → the TTL attribute's epoch seconds, rounded up so TTL never deletes early. */
export const seconds = (ms: number): number => Math.ceil(ms / 1000);

function str(v: AttributeValue | undefined): string {
  return v && 'S' in v ? (v.S as string) : '';
}

function num(v: AttributeValue | undefined): number {
  return v && 'N' in v ? Number(v.N) : 0;
}

/**
 * Records as the scripts return them, and outcomes as the scripts store them.
 *
 * @module
 */
import type { StoreRecord } from '../../core/store.ts';

/**
 * A record from `[state, fingerprint, token, attempt, leaseUntil, expiresAt, outcome, encoding]`,
 * the order claim-1.lua and get-1.lua answer in.
 */
export function fromReply(id: string, r: unknown[]): StoreRecord {
  const completed = r[0] === 'c';
  return {
    id,
    state: completed ? 'completed' : 'in_progress',
    fingerprint: String(r[1]),
    token: String(r[2]),
    attempt: Number(r[3]),
    leaseUntil: Number(r[4]),
    expiresAt: Number(r[5]),
    outcome: completed ? decode(String(r[6] ?? ''), r[7]) : undefined,
  };
}

/**
 * `[text, encoding]` for complete-1.lua. Redis holds bytes and ioredis speaks UTF-8, so a
 * string with a lone surrogate would come back altered; those travel JSON-escaped ('j').
 */
export function toReply(outcome: string): [string, '' | 'j'] {
  return outcome.isWellFormed() ? [outcome, ''] : [JSON.stringify(outcome), 'j'];
}

function decode(text: string, encoding: unknown): string {
  return encoding === 'j' ? (JSON.parse(text) as string) : text;
}

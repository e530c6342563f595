/**
 * Records as the scripts answer them, and outcomes as the scripts store them.
 *
 * @module
 */
import type { StoreRecord } from '../../core/store.ts';

/**
 * The record `id` and Redis' clock from the one string claim-1.lua and get-1.lua answer (one
 * reply element instead of ten: a client decodes every element it receives):
 * `<state><attempt>,<leaseUntil>,<expiresAt>,<encoding>,<#fingerprint>,<#token>,<now>,`
 * followed by the fingerprint, the token and the outcome, where # counts UTF-8 bytes.
 */
export function fromReply(id: string, packed: string): { record: StoreRecord; now: number } {
  const a = packed.indexOf(',');
  const l = packed.indexOf(',', a + 1);
  const e = packed.indexOf(',', l + 1);
  const x = packed.indexOf(',', e + 1);
  const f = packed.indexOf(',', x + 1);
  const t = packed.indexOf(',', f + 1);
  const n = packed.indexOf(',', t + 1);
  const tokenAt = advance(packed, n + 1, Number(packed.slice(x + 1, f)));
  const outcomeAt = advance(packed, tokenAt, Number(packed.slice(f + 1, t)));
  const completed = packed[0] === 'c';
  const record: StoreRecord = {
    id,
    state: completed ? 'completed' : 'in_progress',
    fingerprint: packed.slice(n + 1, tokenAt),
    token: packed.slice(tokenAt, outcomeAt),
    attempt: Number(packed.slice(1, a)),
    leaseUntil: Number(packed.slice(a + 1, l)),
    expiresAt: Number(packed.slice(l + 1, e)),
    outcome: completed ? decode(packed.slice(outcomeAt), packed.slice(e + 1, x)) : undefined,
  };
  return { record, now: Number(packed.slice(t + 1, n)) };
}

/** True for a claim's "existing" answer (it starts with the state), false for "acquired". */
export function isRecord(packed: string): boolean {
  return packed[0] === 'p' || packed[0] === 'c';
}

/**
 * `[text, encoding]` for complete-1.lua. Redis holds bytes and ioredis speaks UTF-8, so a
 * string with a lone surrogate would come back altered; those travel JSON-escaped ('j').
 */
export function toReply(outcome: string): [string, '' | 'j'] {
  return outcome.isWellFormed() ? [outcome, ''] : [JSON.stringify(outcome), 'j'];
}

// --- Internal helpers ---

/** The index `bytes` UTF-8 bytes after `from` in `s` (the scripts count lengths in bytes). */
function advance(s: string, from: number, bytes: number): number {
  let i = from;
  for (let left = bytes; left > 0; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) left -= 1;
    else if (c < 0x800) left -= 2;
    else if (c >= 0xd800 && c < 0xdc00) {
      left -= 4; // a surrogate pair: one code point, four bytes
      i++;
    } else left -= 3;
  }
  return i;
}

function decode(text: string, encoding: string): string {
  return encoding === 'j' ? (JSON.parse(text) as string) : text;
}

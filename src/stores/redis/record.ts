/**
 * Records as the scripts return them, and outcomes as the scripts store them.
 *
 * @module
 */
import type { StoreRecord } from '../../core/store.ts';

/**
 * A record from the packed string claim-1.lua and get-1.lua answer (one reply element instead of
 * eight: a client parses every element it receives) and the outcome element:
 * `<state><attempt>,<leaseUntil>,<expiresAt>,<encoding>,<#fingerprint>,<fingerprint><token>`,
 * where #fingerprint counts UTF-8 bytes.
 */
export function fromReply(id: string, packed: unknown, outcome: unknown): StoreRecord {
  const p = String(packed);
  const a = p.indexOf(',');
  const l = p.indexOf(',', a + 1);
  const e = p.indexOf(',', l + 1);
  const x = p.indexOf(',', e + 1);
  const f = p.indexOf(',', x + 1);
  const bytes = Number(p.slice(x + 1, f));
  // byte and UTF-16 offsets agree while the text is ASCII (hex fingerprints, uuid tokens)
  const rest = p.slice(f + 1);
  const [fingerprint, token] = /[\u0080-\uffff]/.test(rest)
    ? split(rest, bytes)
    : [rest.slice(0, bytes), rest.slice(bytes)];
  const completed = p[0] === 'c';
  return {
    id,
    state: completed ? 'completed' : 'in_progress',
    fingerprint,
    token,
    attempt: Number(p.slice(1, a)),
    leaseUntil: Number(p.slice(a + 1, l)),
    expiresAt: Number(p.slice(l + 1, e)),
    outcome: completed ? decode(String(outcome ?? ''), p.slice(e + 1, x)) : undefined,
  };
}

/**
 * `[text, encoding]` for complete-1.lua. Redis holds bytes and ioredis speaks UTF-8, so a
 * string with a lone surrogate would come back altered; those travel JSON-escaped ('j').
 */
export function toReply(outcome: string): [string, '' | 'j'] {
  return outcome.isWellFormed() ? [outcome, ''] : [JSON.stringify(outcome), 'j'];
}

function split(text: string, bytes: number): [string, string] {
  const b = Buffer.from(text, 'utf8');
  return [b.toString('utf8', 0, bytes), b.toString('utf8', bytes)];
}

function decode(text: string, encoding: string): string {
  return encoding === 'j' ? (JSON.parse(text) as string) : text;
}

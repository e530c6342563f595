/**
 * Who a key belongs to. The scope is hashed into the record id together with the key, so two
 * callers never share a record: one caller can neither read another's stored response nor
 * block another's key by guessing it.
 *
 * The default scope is a SHA-256 over the credentials the request carries (`Authorization`,
 * `Cookie`, `X-API-Key`). That is safe but coarse: a caller whose credentials change between
 * retries (a rotated token, a new cookie) starts a new record. Apps with a notion of user or
 * tenant should pass `scope: (req) => tenantOf(req)` instead.
 *
 * @module
 */
import { createHash } from 'node:crypto';

/**
 * Request headers that carry credentials and make up the default scope.
 *
 * @example
 * CREDENTIAL_HEADERS.includes('authorization') // true
 */
export const CREDENTIAL_HEADERS: readonly string[] = ['authorization', 'cookie', 'x-api-key'];

/** What a `scope` function may answer: one part, several parts, or nothing (global). */
export type ScopeValue = string | readonly string[] | undefined | null;

/** Extracts the scope of a request: tenant, principal, API-key id… */
export type ScopeFn = (request: Request) => ScopeValue | Promise<ScopeValue>;

/**
 * The default scope: `cred:` + hex SHA-256 of the credential headers, or `anonymous` when the
 * request carries none.
 *
 * @example
 * credentialScope(new Request('https://x', { headers: { authorization: 'Bearer t' } })) // ['cred:4f…']
 */
export function credentialScope(request: Request): string[] {
  const values = CREDENTIAL_HEADERS.map((h) => request.headers.get(h));
  if (values.every((v) => v === null)) return ['anonymous'];
  return [`cred:${createHash('sha256').update(JSON.stringify(values)).digest('hex')}`];
}

/** Scope values that mean "everyone shares one namespace". */
export function isGlobalScope(parts: readonly string[]): boolean {
  return parts.length === 0 || parts.every((p) => p === '' || p === 'global' || p === '*');
}

/** Turns a {@link ScopeValue} into parts, rejecting non-strings. */
export function scopeParts(value: ScopeValue): string[] {
  if (value === undefined || value === null) return [];
  const parts = typeof value === 'string' ? [value] : [...value];
  for (const p of parts) {
    if (typeof p !== 'string') throw new TypeError(`scope() must answer strings, got ${typeof p}`);
  }
  return parts;
}

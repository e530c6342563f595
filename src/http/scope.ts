/**
 * Who a key belongs to. The scope is hashed into the record id together with the key, so
 * callers in different scopes never share a record: one can neither read another's stored
 * response nor block another's key by guessing it.
 *
 * The default scope is a SHA-256 over the credentials the request carries (`Authorization`,
 * `Cookie`, `X-API-Key`). That is safe but coarse: a caller whose credentials change between
 * retries (a rotated token, a new cookie) starts a new record. Requests without any of those
 * headers all share the one `anonymous` scope, like global keys (idem warns once). Apps with
 * a notion of user or tenant should pass `scope: (req) => tenantOf(req)` instead.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { scopeParts as engineScopeParts } from '../core/engine.ts';

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

/** The default scope of a request that carries no credentials: one namespace for all such callers. */
export const ANONYMOUS_SCOPE = 'anonymous';

/**
 * The default scope: `cred:` + hex SHA-256 of the credential headers, or `anonymous` when the
 * request carries none (every such request shares it).
 *
 * @example
 * credentialScope(new Request('https://x', { headers: { authorization: 'Bearer t' } })) // ['cred:4f…']
 */
export function credentialScope(request: Request): string[] {
  const values = CREDENTIAL_HEADERS.map((h) => request.headers.get(h));
  if (values.every((v) => v === null)) return [ANONYMOUS_SCOPE];
  return [`cred:${createHash('sha256').update(JSON.stringify(values)).digest('hex')}`];
}

/** Scope values that mean "everyone shares one namespace". */
export function isGlobalScope(parts: readonly string[]): boolean {
  return parts.length === 0 || parts.every((p) => p === '' || p === 'global' || p === '*');
}

/** Turns a {@link ScopeValue} into parts; anything but strings is an `InvalidOptionError`. */
export function scopeParts(value: ScopeValue): string[] {
  return engineScopeParts(value ?? undefined);
}

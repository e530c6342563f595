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
import type { HeaderReader } from './fingerprint.ts';

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
 * The default scope: `cred:` + hex SHA-256 of the values of the credential headers (`names`,
 * default {@link CREDENTIAL_HEADERS}; order matters), or `anonymous` when the request carries
 * none of them (every such request shares it). `request` is a `Request` or anything with a
 * {@link HeaderReader} as `headers`.
 *
 * @example
 * credentialScope(new Request('https://x', { headers: { authorization: 'Bearer t' } })) // ['cred:4f…']
 * credentialScope(request, ['x-api-key', 'openai-organization'])
 */
export function credentialScope(
  request: { readonly headers: HeaderReader },
  names: readonly string[] = CREDENTIAL_HEADERS,
): string[] {
  let any = false;
  const values = names.map((h) => {
    const v = request.headers.get(h);
    if (v !== null) any = true;
    return v;
  });
  if (!any) return [ANONYMOUS_SCOPE];
  return [`cred:${createHash('sha256').update(JSON.stringify(values)).digest('hex')}`];
}

/**
 * The one-time warning logged when a keyed request falls into the shared `anonymous` scope:
 * it names the credential headers looked for and how to tell callers apart.
 *
 * @example
 * logger.warn(anonymousScopeWarning(CREDENTIAL_HEADERS, 'Pass scope: (req) => tenantOrUserId to tell them apart.'));
 */
export function anonymousScopeWarning(names: readonly string[], remedy: string): string {
  return (
    `idem: a keyed request came without credentials (${names.join(', ')}): all such callers ` +
    `share one namespace ('${ANONYMOUS_SCOPE}'), so one can replay or block another's key. ${remedy}`
  );
}

/** Scope values that mean "everyone shares one namespace". */
export function isGlobalScope(parts: readonly string[]): boolean {
  return parts.length === 0 || parts.every((p) => p === '' || p === 'global' || p === '*');
}

/** Turns a {@link ScopeValue} into parts; anything but strings is an `InvalidOptionError`. */
export function scopeParts(value: ScopeValue): string[] {
  return engineScopeParts(value ?? undefined);
}

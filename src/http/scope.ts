/**
 * Who a key belongs to. The scope is hashed into the record id together with the key, so
 * callers in different scopes never share a record: one can neither read another's stored
 * response nor block another's key by guessing it.
 *
 * The default scope is a SHA-256 over the credentials the request carries: `Authorization`,
 * `Proxy-Authorization`, `X-API-Key` and cookies. Values are normalized first, so one caller
 * keeps one scope however its client spells them: whitespace around a value, the auth scheme's
 * case and the spaces after the scheme do not count (anything inside a credential does), and
 * cookies count only by name (the configured `scopeCookies`; with
 * none configured, all cookies, and only on a request that carries no other credential). A
 * credential header sent twice is refused (400 `duplicate-credentials`): which value would the
 * upstream believe? Requests without any credential share the one `anonymous` scope (idem
 * warns once; `scope: 'required'` answers 401 instead).
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
export const CREDENTIAL_HEADERS: readonly string[] = [
  'authorization',
  'proxy-authorization',
  'x-api-key',
  'cookie',
];

/** What a `scope` function may answer: one part, several parts, or nothing (global). */
export type ScopeValue = string | readonly string[] | undefined | null;

/** Extracts the scope of a request: tenant, principal, API-key id… */
export type ScopeFn = (request: Request) => ScopeValue | Promise<ScopeValue>;

/** The default scope of a request that carries no credentials: one namespace for all such callers. */
export const ANONYMOUS_SCOPE = 'anonymous';

/** Header access that can also tell field lines apart (Node's raw headers can; `Headers` joins them). */
export interface HeaderLines extends HeaderReader {
  /** Every field line of `name`, in order; empty when absent. */
  lines?(name: string): readonly string[];
}

/** Options of {@link credentialScopeOf}. */
export interface CredentialOptions {
  /** Headers that identify the caller, tried before the credential headers (the gateway's `scopeHeaders`). */
  headers?: readonly string[];
  /** The cookies that identify a caller (session cookies). Default: all, only when no other credential is sent. */
  cookies?: readonly string[];
}

/** The credential scope of a request, or the credential header it carries twice. */
export type CredentialScope =
  | { ok: true; parts: string[]; anonymous: boolean }
  | { ok: false; duplicate: string };

/**
 * The default scope of a request: `cred:` + hex SHA-256 of its normalized credentials, or
 * `anonymous`. The `headers` option names headers that identify the caller (an authenticating
 * proxy's `x-tenant`); they are used when present, else the {@link CREDENTIAL_HEADERS}.
 *
 * @example
 * credentialScopeOf({ headers: new Headers({ authorization: 'bearer  t' }) })
 * // { ok: true, parts: ['cred:…'], anonymous: false } — the same as for 'Bearer t'
 */
export function credentialScopeOf(
  request: { readonly headers: HeaderLines },
  options: CredentialOptions = {},
): CredentialScope {
  const lists = options.headers?.length ? [options.headers, CREDENTIAL_HEADERS] : [CREDENTIAL_HEADERS];
  for (const names of lists) {
    const values: (string | null)[] = [];
    for (const name of names) {
      const lines = linesOf(request.headers, name);
      if (name !== 'cookie' && lines.length > 1) return { ok: false, duplicate: name };
      // An empty field is no credential: every client could send it, so it names no caller.
      values.push(name === 'cookie' || lines[0] === undefined ? null : normalize(name, lines[0]) || null);
    }
    const cookieAt = names.indexOf('cookie');
    if (cookieAt >= 0) {
      const cookies = cookieValue(linesOf(request.headers, 'cookie'), options.cookies);
      if (cookies === undefined) return { ok: false, duplicate: 'cookie' };
      const others = values.some((v) => v !== null);
      values[cookieAt] = options.cookies || !others ? cookies : null;
    }
    if (values.some((v) => v !== null)) {
      const digest = createHash('sha256').update(JSON.stringify(values)).digest('hex');
      return { ok: true, parts: [`cred:${digest}`], anonymous: false };
    }
  }
  return { ok: true, parts: [ANONYMOUS_SCOPE], anonymous: true };
}

/**
 * The default scope over `names` (default {@link CREDENTIAL_HEADERS}), as parts; a duplicated
 * credential counts as its joined value here (the HTTP layers refuse it first).
 *
 * @example
 * credentialScope(new Request('https://x', { headers: { authorization: 'Bearer t' } })) // ['cred:4f…']
 */
export function credentialScope(
  request: { readonly headers: HeaderReader },
  names: readonly string[] = CREDENTIAL_HEADERS,
): string[] {
  const custom = names !== CREDENTIAL_HEADERS;
  if (custom && !names.some((n) => request.headers.get(n) !== null)) return [ANONYMOUS_SCOPE];
  const joined = {
    get: (n: string) => request.headers.get(n),
    lines: (n: string) => one(request.headers, n),
  };
  const scope = credentialScopeOf({ headers: joined }, custom ? { headers: names } : {});
  return scope.ok ? scope.parts : [ANONYMOUS_SCOPE];
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

// --- Internal helpers ---

const one = (headers: HeaderReader, name: string): string[] => {
  const v = headers.get(name);
  return v === null ? [] : [v];
};

/** A new `scheme credentials` after a comma: what `Headers` makes of two Authorization lines. */
const ANOTHER_CREDENTIAL = /,\s*[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*\s+[^\s=,]/;

/** The field lines of `name`; from a joined value, a list is split where it must be one. */
function linesOf(headers: HeaderLines, name: string): readonly string[] {
  if (headers.lines) return headers.lines(name);
  const v = headers.get(name);
  if (v === null) return [];
  if (name === 'cookie') return [v];
  if (name.endsWith('authorization')) return ANOTHER_CREDENTIAL.test(v) ? v.split(/,\s*/) : [v];
  return v.includes(',') ? v.split(/,\s*/) : [v];
}

/** The auth scheme is case-insensitive and whitespace is not part of a credential. */
function normalize(name: string, value: string): string {
  // Only what HTTP itself ignores: optional whitespace around the field value, and for the
  // authorization fields the scheme's case and the run of spaces after it (RFC 9110 §11.4:
  // `auth-scheme 1*SP credentials`). Anything inside the credentials counts as sent: two values
  // that differ there may be two callers to the upstream, so they must be two scopes.
  const v = value.replace(/^[ \t]+|[ \t]+$/g, '');
  if (!name.endsWith('authorization')) return v;
  const m = /^([^ \t]+)[ \t]+/.exec(v);
  return m ? `${(m[1] as string).toLowerCase()} ${v.slice(m[0].length)}` : v.toLowerCase();
}

/** The chosen cookies, sorted; null when none; undefined when one chosen name has two values. */
function cookieValue(
  lines: readonly string[],
  names: readonly string[] | undefined,
): string | null | undefined {
  const wanted = names ? new Set(names) : undefined;
  const seen = new Map<string, string>();
  for (const line of lines) {
    for (const pair of line.split(';')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (value === '' || (wanted && !wanted.has(name))) continue; // an empty cookie names no caller
      const prev = seen.get(name);
      if (wanted && prev !== undefined && prev !== value) return undefined;
      seen.set(name, value);
    }
  }
  if (seen.size === 0) return null;
  return [...seen]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([n, v]) => `${n}=${v}`)
    .join('; ');
}

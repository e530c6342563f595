/**
 * `idem keys show` and `idem purge`: look up one key's record the way the engine, the middleware
 * or the gateway would find it, and delete expired records in bounded batches.
 *
 * @module
 */
import { InvalidKeyError } from '../core/errors.ts';
import { downstreamKeyOf, recordIdOf, scopeHashOf, validateKey } from '../core/keys.ts';
import { listedStateOf, type Store, type StoreRecord } from '../core/store.ts';
import { engineKey } from '../http/key.ts';
import { MAX_KEY_LENGTH_BOUND } from '../http/options.ts';
import { credentialScope } from '../http/scope.ts';

/** Where a key lives: the scope parts hashed with it into the record id. */
export interface KeyScope {
  /** Scope parts as given to `idem.run(key, fn, { scope })` (the instance scope first). */
  scope?: readonly string[];
  /**
   * HTTP callers: the request headers whose credentials scope the key (as the middleware and the
   * gateway hash them), and the gateway's `namespace` (`gateway` by default) when the record was
   * written by `idem serve`.
   */
  http?: { headers: Record<string, string>; namespace?: string };
}

/** What `idem keys show` reports. */
export interface KeyReport {
  key: string;
  recordId: string;
  downstreamKey: string;
  state: 'absent' | 'in_progress' | 'completed' | 'released';
  attempt?: number;
  fingerprint?: string;
  /** ms from now; negative once passed. */
  leaseEndsInMs?: number;
  expiresInMs?: number;
  outcomeBytes?: number;
  encrypted?: boolean;
  /** Replays the store's counters kept for this record (absent: the store keeps no counters). */
  replays?: number;
  /** Epoch ms of the last replay counted. */
  lastReplayAt?: number;
  /** Why the replay count could not be read (the rest of the report stands). */
  replaysError?: string;
  /** Epoch ms the record was created (store clock); 0 when the store did not keep it. Stores with `inspect` only. */
  createdAt?: number;
  /** Epoch ms it was completed; 0 while it is not. Stores with `inspect` only. */
  completedAt?: number;
  /** The scope hash kept with it ('' when unscoped): what `idem keys list --scope-hash` filters on. */
  scopeHash?: string;
}

/**
 * The record id a key has under a scope, as the engine computes it.
 *
 * @example
 * recordIdFor('order-42', { http: { headers: { authorization: 'Bearer t' }, namespace: 'gateway' } })
 */
export function recordIdFor(key: string, where: KeyScope): string {
  if (!where.http) return recordIdOf(scopeOf(where), validateKey(key));
  // HTTP keys up to maxKeyLength (1024) reach the engine as engineKey(key), as the layers store them
  if (key.length > MAX_KEY_LENGTH_BOUND) {
    throw new InvalidKeyError(
      `the key is over ${MAX_KEY_LENGTH_BOUND} characters, the most any route allows`,
    );
  }
  return recordIdOf(scopeOf(where), validateKey(engineKey(key)));
}

/**
 * The scope hash records written under a scope carry (what `idem keys list --scope` filters on),
 * as the engine computes it: '' for no scope.
 *
 * @example
 * scopeHashFor({ scope: ['tenant-a'] }) // 22 characters of base64url
 * scopeHashFor({ http: { headers: { authorization: 'Bearer t' }, namespace: 'gateway' } })
 */
export function scopeHashFor(where: KeyScope): string {
  return scopeHashOf(scopeOf(where));
}

/** Every scope part in the order the engine hashes them (HTTP: namespace, scope, credentials). */
function scopeOf(where: KeyScope): string[] {
  if (!where.http) return [...(where.scope ?? [])];
  const creds = credentialScope(new Request('http://idem.invalid', { headers: where.http.headers }));
  return [...(where.http.namespace ? [where.http.namespace] : []), ...(where.scope ?? []), ...creds];
}

/**
 * Reads one key's record from the store (the raw key never reaches it, only its hash).
 *
 * @example
 * const report = await describeKey(store, 'order-42', { scope: ['billing'] });
 */
export async function describeKey(
  store: Store,
  key: string,
  where: KeyScope,
  now = Date.now(),
): Promise<KeyReport> {
  const recordId = recordIdFor(key, where);
  const base = { key, recordId, downstreamKey: downstreamKeyOf(recordId) };
  const r: StoreRecord | undefined = await store.get(recordId);
  if (!r) return { ...base, state: 'absent' };
  return {
    ...base,
    ...(await replaysOf(store, recordId)),
    ...(await timesOf(store, recordId)),
    state: listedStateOf(r), // a holder's release after a takeover stays in progress: the next claim takes over
    attempt: r.attempt,
    fingerprint: r.fingerprint,
    ...(r.state === 'in_progress' && { leaseEndsInMs: r.leaseUntil - now }),
    expiresInMs: r.expiresAt - now,
    ...(r.outcome !== undefined && {
      outcomeBytes: Buffer.byteLength(r.outcome),
      encrypted: r.outcome.startsWith('e1:'),
    }),
  };
}

/** When the record was created and completed, and its scope hash, from `inspect` (`{}` without it). */
async function timesOf(store: Store, id: string): Promise<Partial<KeyReport>> {
  const r = await store.inspect?.get(id);
  return r ? { createdAt: r.createdAt, completedAt: r.completedAt, scopeHash: r.scopeHash } : {};
}

/** The record's kept replay count, `{}` for a store without counters, or why it could not be read. */
async function replaysOf(store: Store, id: string): Promise<Partial<KeyReport>> {
  if (!store.counters) return {};
  try {
    const c = await store.counters.record(id);
    return c ? { replays: c.replays, lastReplayAt: c.lastReplayAt } : { replays: 0 };
  } catch (error) {
    return { replaysError: (error as Error)?.message ?? String(error) };
  }
}

const ago = (ms: number) => {
  const s = Math.round(Math.abs(ms) / 1000);
  const text = s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
  return ms >= 0 ? `in ${text}` : `${text} ago`;
};

const iso = (at: number) => new Date(at).toISOString();

/** The report as a few readable lines. */
export function formatKey(r: KeyReport): string {
  const lines = [`key ${JSON.stringify(r.key)} → record ${r.recordId}`, `  state: ${r.state}`];
  if (r.state === 'absent') {
    lines.push('  (no live record: never used under this scope, expired, or a different scope/credentials)');
    return lines.join('\n');
  }
  lines.push(
    `  attempt: ${r.attempt}${r.attempt && r.attempt > 1 ? ' (taken over after a holder died)' : ''}`,
  );
  lines.push(`  fingerprint: ${r.fingerprint || '(none: no input was bound)'}`);
  const now = Date.now();
  if (r.createdAt !== undefined) {
    lines.push(
      `  created: ${r.createdAt ? `${iso(r.createdAt)} (${ago(r.createdAt - now)})` : 'unknown (written before the store kept it)'}`,
    );
  }
  if (r.completedAt) lines.push(`  completed: ${iso(r.completedAt)} (${ago(r.completedAt - now)})`);
  if (r.scopeHash !== undefined) lines.push(`  scope hash: ${r.scopeHash || '(none: unscoped)'}`);
  if (r.leaseEndsInMs !== undefined) lines.push(`  lease ends: ${ago(r.leaseEndsInMs)}`);
  if (r.expiresInMs !== undefined) lines.push(`  expires: ${ago(r.expiresInMs)}`);
  if (r.outcomeBytes !== undefined) {
    lines.push(`  outcome: ${r.outcomeBytes} bytes${r.encrypted ? ', encrypted at rest' : ''}`);
  }
  if (r.replays !== undefined) {
    const last = r.lastReplayAt === undefined ? '' : ` (last ${ago(r.lastReplayAt - Date.now())})`;
    lines.push(`  replays: ${r.replays}${last}`);
  }
  if (r.replaysError !== undefined) lines.push(`  replays: unknown (${r.replaysError})`);
  lines.push(`  downstream key: ${r.downstreamKey}`);
  return lines.join('\n');
}

/**
 * Deletes expired records in batches of `batch`, reporting progress after each; answers how
 * many were deleted. Stores that expire records themselves (Redis) delete nothing here.
 *
 * @example
 * await purgeStore(store, { batch: 1000, onBatch: (n) => console.log(n) });
 */
export async function purgeStore(
  store: Store,
  options: { batch?: number; onBatch?: (total: number) => void } = {},
): Promise<number> {
  const batch = options.batch ?? 1000;
  let total = 0;
  for (;;) {
    const n = await store.purgeExpired(batch);
    total += n;
    options.onBatch?.(total);
    if (n < batch) return total;
  }
}

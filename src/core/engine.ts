/**
 * The engine: claim → run → complete / release, single-flight within the process, and
 * replay of stored outcomes. Everything else in idem is a thin layer over `execute`.
 *
 * ```
 * execute(key, action, options)
 *   resolveRunOptions (options.ts) ─ record id + fingerprint (keys.ts)
 *   replay cache hit? ─▶ replay                                   (replay-cache.ts)
 *   same record in flight here? ─▶ join it, no store call         (single-flight.ts)
 *   otherwise take a turn: claim ─▶ hold | replay | wait | 409    (turn.ts, wait.ts, holder.ts)
 * ```
 *
 * @module
 */

import { createJournal } from '../workflow/journal.ts';
import type { Call } from './call.ts';
import { outcomeCodec, sealedStore } from './encryption.ts';
import { FingerprintMismatchError, InvalidOptionError } from './errors.ts';
import type { IdemEvent } from './events.ts';
import { createHolder } from './holder.ts';
import { createConsumeOnce } from './inbox.ts';
import {
  deriveKey,
  downstreamKeyOf,
  fingerprintOf,
  recordIdFrom,
  recordIdMemo,
  recordIdPrefix,
  sameFingerprint,
  scopeHashFrom,
  scopeHashMemo,
  scopeParts,
  validateKey,
} from './keys.ts';
import { createLateClaimUndo } from './late-claim.ts';
import { createHeartbeatTimer } from './lease.ts';
import { type ResolvedRunOptions, resolveRunOptions } from './options.ts';
import { createReplayCache } from './replay-cache.ts';
import { createSingleFlight } from './single-flight.ts';
import { createTurns } from './turn.ts';
import type { Action, ExecuteResult, Idem, IdemOptions, RunOptions } from './types.ts';

export type { ActionContext } from './holder.ts';
/** Kept here too, so `import { scopeParts } from '../core/engine.ts'` still works. */
export { scopeParts } from './keys.ts';
export type { InProgressPolicy } from './options.ts';
export type { Action, ExecuteResult, Idem, IdemOptions, RunOptions } from './types.ts';

const DEFAULT_TTL_MS = 86_400_000;
const DEFAULT_LEASE_MS = 30_000;
const DEFAULT_WAIT_MS = 30_000;
const DEFAULT_RELEASE_GUARD_MS = 60_000;
const DEFAULT_MAX_OUTCOME_BYTES = 4 * 1024 * 1024;
/** How many recent keys' record ids an instance remembers (about 100 KB with 40-character keys). */
const RECORD_ID_MEMO_SIZE = 1024;
/** Scopes (tenants, callers' credentials) whose hash is remembered. */
const SCOPE_HASH_MEMO_SIZE = 1024;
const valueOfResult = <T>(result: ExecuteResult<T>): T => result.value;
/** `execute(key, action)` without options: nothing to check per call. */
const NO_OPTIONS: RunOptions<never> = Object.freeze({});
const NOTHING_RESOLVED: ResolvedRunOptions = Object.freeze({});

/**
 * Creates an idem instance over a store.
 *
 * @example
 * import { createIdem, memoryStore } from 'idem';
 * const idem = createIdem({ store: memoryStore(), ttl: '24h', lease: '30s' });
 * const receipt = await idem.run(idem.key('pay', claimId, amount), (ctx) =>
 *   payments.post({ claimId, amount }, { idempotencyKey: ctx.downstreamKey }),
 * );
 */
export function createIdem(options: IdemOptions): Idem {
  if (!options || typeof options.store?.claim !== 'function') {
    throw new InvalidOptionError('createIdem needs { store }, e.g. memoryStore() or sqliteStore({ path })');
  }
  const store = options.store;
  const given = resolveRunOptions(options);
  const defaults = {
    ttlMs: given.ttlMs ?? DEFAULT_TTL_MS,
    leaseMs: given.leaseMs ?? DEFAULT_LEASE_MS,
    waitMs: given.waitMs ?? DEFAULT_WAIT_MS,
    releaseGuardMs: given.releaseGuardMs ?? DEFAULT_RELEASE_GUARD_MS,
    policy: given.onInProgress ?? 'reject',
  };
  const baseScope = scopeParts(options.scope);
  const basePrefix = recordIdPrefix(baseScope);
  // keys seen lately (retries, replays) are not hashed again; a per-call scope always hashes
  const baseIdOf = recordIdMemo(basePrefix, RECORD_ID_MEMO_SIZE);
  // the scope hash kept with each record for operators (idem keys list --scope)
  const baseScopeHash = scopeHashFrom(basePrefix);
  const scopeHashOfPrefix = scopeHashMemo(SCOPE_HASH_MEMO_SIZE);

  const emit = safeHook(options.onEvent);
  const codec = outcomeCodec(options.encryption);
  const cache = createReplayCache(options.replayCache);
  const flights = createSingleFlight(emit);
  const lateClaims = createLateClaimUndo(store, emit);
  const maxOutcomeBytes = options.maxOutcomeBytes ?? DEFAULT_MAX_OUTCOME_BYTES;
  // what the journal and the inbox write themselves goes through the same encryption at rest
  const sealed = sealedStore(store, codec);
  const hold = createHolder({
    store,
    emit,
    maxOutcomeBytes,
    definitive: options.definitive,
    codec,
    beats: createHeartbeatTimer(), // one timer renews every holder of this instance
    lateClaims,
  });
  const turns = createTurns({ store, emit, cache, hold, flights, lateClaims, codec });

  /** The record id and scope hash of `key` under the instance scope and a call's own. */
  function idsOf(key: string, scope: string | readonly string[] | undefined) {
    if (scope === undefined) return { recordId: baseIdOf(key), scopeHash: baseScopeHash };
    const prefix = recordIdPrefix([...baseScope, ...scopeParts(scope)]);
    return { recordId: recordIdFrom(prefix, key), scopeHash: scopeHashOfPrefix(prefix) };
  }

  /** The call with its options checked and merged over the instance defaults. */
  function callOf<T>(key: string, action: Action<T>, opts: RunOptions<T>): Call<T> {
    validateKey(key);
    if (typeof action !== 'function') throw new InvalidOptionError('action must be a function');
    const own = opts === NO_OPTIONS ? NOTHING_RESOLVED : resolveRunOptions(opts);
    const ttlMs = own.ttlMs ?? defaults.ttlMs;
    return {
      key,
      action,
      opts,
      ...idsOf(key, opts.scope),
      fingerprint:
        opts.fingerprint ?? (opts.input === undefined ? '' : fingerprintOf(opts.input, opts.exclude)),
      policy: own.onInProgress ?? defaults.policy,
      leaseMs: own.leaseMs ?? defaults.leaseMs,
      ttlMs,
      waitMs: own.waitMs ?? defaults.waitMs,
      // a released key is never remembered longer than a completed one
      releaseGuardMs: Math.min(own.releaseGuardMs ?? defaults.releaseGuardMs, ttlMs),
    };
  }

  // Not async: a call that runs takes one async frame (take), not two.
  function execute<T>(
    key: string,
    action: Action<T>,
    opts: RunOptions<T> = NO_OPTIONS as RunOptions<T>,
  ): Promise<ExecuteResult<T>> {
    let call: Call<T>;
    try {
      call = callOf(key, action, opts);
      const cached = cache?.get(call.recordId);
      if (cached) {
        if (!sameFingerprint(cached.fingerprint, call.fingerprint)) {
          emit?.({ type: 'mismatch', recordId: call.recordId });
          throw new FingerprintMismatchError();
        }
        return Promise.resolve(turns.replay<T>(call.recordId, cached.outcome, cached.attempt, true));
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const shared = flights.get(call.recordId);
    if (shared) {
      return flights.join(shared, call, (waitMs) => execute(key, action, { ...opts, waitTimeout: waitMs }));
    }
    return turns.take(call);
  }

  const journal = createJournal({
    store: sealed,
    codec,
    scope: baseScope,
    ttlMs: defaults.ttlMs,
    leaseMs: defaults.leaseMs,
    maxOutcomeBytes,
    definitive: options.definitive,
    execute: (key, action, opts) => execute(key, action, opts),
  });
  const ids = (key: string, scope?: string | readonly string[]) => {
    const { recordId } = idsOf(validateKey(key), scope);
    return { recordId, downstreamKey: downstreamKeyOf(recordId) };
  };
  const consumeOnce = createConsumeOnce({
    store: sealed,
    execute,
    ids,
    definitive: options.definitive,
    ttlMs: defaults.ttlMs,
  });

  return {
    store,
    execute,
    workflow: journal.workflow,
    runs: journal.runs,
    consumeOnce,
    run(key, action, opts) {
      return execute(key, action, opts).then(valueOfResult);
    },
    key(namespace, ...parts) {
      return deriveKey(namespace, parts);
    },
    ids,
    async purgeExpired({ batchSize = 1000, maxBatches = Number.POSITIVE_INFINITY } = {}) {
      let total = 0;
      for (let i = 0; i < maxBatches; i++) {
        const n = await turns.storeCall('*', () => store.purgeExpired(batchSize));
        total += n;
        if (n < batchSize) break;
      }
      return total;
    },
    async close() {
      lateClaims.cancel();
      await store.close?.();
    },
  };
}

/**
 * The event hook, made unable to break an action. Without a hook, events are never even
 * built: `emit?.({...})` skips its argument.
 */
function safeHook(hook: IdemOptions['onEvent']): ((event: IdemEvent) => void) | undefined {
  if (!hook) return undefined;
  return (event) => {
    try {
      hook(event);
    } catch {
      // a metrics hook must never break the action
    }
  };
}

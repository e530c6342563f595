/**
 * The engine: claim → run → complete / release, single-flight within the process, and
 * replay of stored outcomes. Everything else in idem is a thin layer over `execute`.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { withDeadline } from './deadline.ts';
import type { Duration } from './duration.ts';
import {
  FingerprintMismatchError,
  InProgressError,
  InvalidOptionError,
  isIdemError,
  OutcomeTooLargeError,
  StoreUnavailableError,
} from './errors.ts';
import type { IdemEvent } from './events.ts';
import { type ActionContext, createHolder } from './holder.ts';
import {
  deriveKey,
  downstreamKeyOf,
  fingerprintOf,
  recordIdOf,
  sameFingerprint,
  validateKey,
} from './keys.ts';
import { createLateClaimUndo } from './late-claim.ts';
import { type InProgressPolicy, resolveRunOptions } from './options.ts';
import { decodeOutcome, reviveError } from './outcome.ts';
import { createReplayCache, type ReplayCacheOptions } from './replay-cache.ts';
import type { Store } from './store.ts';
import { waitForTurn } from './wait.ts';

export type { ActionContext } from './holder.ts';

export type { InProgressPolicy } from './options.ts';

const DEFAULT_TTL_MS = 86_400_000;
const DEFAULT_LEASE_MS = 30_000;
const DEFAULT_WAIT_MS = 30_000;

/** Options of {@link createIdem}; every per-call option in {@link RunOptions} overrides these. */
export interface IdemOptions {
  store: Store;
  /** How long a completed outcome is kept and replayed. Default `'24h'`. */
  ttl?: Duration;
  /** How long a holder owns the key without renewing. Renewed every lease/3. Default `'30s'`. */
  lease?: Duration;
  /** `'reject'` (default) throws `InProgressError`; `'wait'` waits for the holder's outcome. */
  onInProgress?: InProgressPolicy;
  /** How long `'wait'` waits before throwing `InProgressError`. Default `'30s'`. */
  waitTimeout?: Duration;
  /** Scope parts prefixed to every key (service, tenant…). Part of the hashed record id. */
  scope?: string | readonly string[];
  /** Largest serialized outcome stored, in bytes. Default 4 MiB. */
  maxOutcomeBytes?: number;
  /**
   * Keep completed outcomes in process memory, so repeated replays of hot keys skip the store.
   * Safe: a completed record cannot change before it expires. Off by default; `true` for the
   * defaults (10 000 entries, 32 MiB) or `{ maxEntries, maxBytes, marginMs }`.
   */
  replayCache?: boolean | ReplayCacheOptions;
  /** Errors for which this returns true are stored and replayed instead of releasing the key. */
  definitive?: (error: unknown) => boolean;
  /** Receives an event per transition, for metrics and logs. Never receives raw keys. */
  onEvent?: (event: IdemEvent) => void;
}

/** Per-call options of `run` / `execute`. */
export interface RunOptions<T = unknown> {
  /** The input whose canonical JSON fingerprint is bound to the key at claim time. */
  input?: unknown;
  /** A precomputed fingerprint, instead of `input`. */
  fingerprint?: string;
  /** Dot paths left out of the fingerprint (`'traceId'`, `'meta.sentAt'`, `'items.*.nonce'`). */
  exclude?: readonly string[];
  /** Scope parts (tenant, principal, operation) added to the instance scope. */
  scope?: string | readonly string[];
  ttl?: Duration;
  lease?: Duration;
  onInProgress?: InProgressPolicy;
  waitTimeout?: Duration;
  /** Return true to hand this value to the caller but release the key (a transient result). */
  releaseIf?: (value: T) => boolean;
  definitive?: (error: unknown) => boolean;
}

/** The action guarded by a key. */
export type Action<T> = (ctx: ActionContext) => T | Promise<T>;

/** What `execute` answers. */
export interface ExecuteResult<T> {
  value: T;
  /** True when the action did not run for this call and the value is a stored (or shared) one. */
  replayed: boolean;
  attempt: number;
  recordId: string;
}

/** The idem instance. */
export interface Idem {
  /** Runs `action` once per key and answers every later call with the stored outcome. */
  run<T>(key: string, action: Action<T>, options?: RunOptions<T>): Promise<T>;
  /** Like `run`, with `replayed`, `attempt` and `recordId`. */
  execute<T>(key: string, action: Action<T>, options?: RunOptions<T>): Promise<ExecuteResult<T>>;
  /** A deterministic key: `namespace:` + SHA-256 of the canonical JSON of `parts`. */
  key(namespace: string, ...parts: unknown[]): string;
  /**
   * The hashed record id and the downstream key a call with this key and scope would use,
   * without touching the store (instance scope included).
   */
  ids(key: string, scope?: string | readonly string[]): { recordId: string; downstreamKey: string };
  /** Deletes expired records in batches of `batchSize`; answers how many. */
  purgeExpired(options?: { batchSize?: number; maxBatches?: number }): Promise<number>;
  /** Closes the store. */
  close(): Promise<void>;
  readonly store: Store;
}

/** What a call for a record in flight in this process knows about it. */
interface Inflight {
  fingerprint: string;
  /** 'claiming' until the first claim answers; then holding, waiting on another process, or done. */
  state: 'claiming' | 'holder' | 'waiting' | 'done';
  /** Resolves when state leaves 'claiming'. */
  claimed: Promise<void>;
  /** Local estimate of when the holder's lease ends (renewed by the heartbeat). */
  leaseEnd: number;
  /** Set when the holder released the key (error, releaseIf): joiners must claim for themselves. */
  released: boolean;
  result: Promise<ExecuteResult<unknown>>;
}

interface Call<T> {
  key: string;
  action: Action<T>;
  opts: RunOptions<T>;
  recordId: string;
  fingerprint: string;
  policy: InProgressPolicy;
  leaseMs: number;
  ttlMs: number;
  waitMs: number;
}

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
    policy: given.onInProgress ?? 'reject',
  };
  const baseScope = scopeParts(options.scope);
  const inflight = new Map<string, Inflight>();
  const cache = createReplayCache(options.replayCache);
  const idOf = (key: string, scope: string | readonly string[] | undefined) =>
    recordIdOf([...baseScope, ...scopeParts(scope)], key);

  // Without a hook, events are never even built: `emit?.({...})` skips its argument.
  const hook = options.onEvent;
  const emit: ((event: IdemEvent) => void) | undefined = hook
    ? (event) => {
        try {
          hook(event);
        } catch {
          // a metrics hook must never break the action
        }
      }
    : undefined;
  const lateClaims = createLateClaimUndo(store, emit);
  const hold = createHolder({
    store,
    emit,
    maxOutcomeBytes: options.maxOutcomeBytes ?? 4 * 1024 * 1024,
    definitive: options.definitive,
  });

  async function execute<T>(
    key: string,
    action: Action<T>,
    opts: RunOptions<T> = {},
  ): Promise<ExecuteResult<T>> {
    validateKey(key);
    if (typeof action !== 'function') throw new InvalidOptionError('action must be a function');
    const own = resolveRunOptions(opts);
    const call: Call<T> = {
      key,
      action,
      opts,
      recordId: idOf(key, opts.scope),
      fingerprint:
        opts.fingerprint ?? (opts.input === undefined ? '' : fingerprintOf(opts.input, opts.exclude)),
      policy: own.onInProgress ?? defaults.policy,
      leaseMs: own.leaseMs ?? defaults.leaseMs,
      ttlMs: own.ttlMs ?? defaults.ttlMs,
      waitMs: own.waitMs ?? defaults.waitMs,
    };
    const cached = cache?.get(call.recordId);
    if (cached) {
      if (!sameFingerprint(cached.fingerprint, call.fingerprint)) {
        emit?.({ type: 'mismatch', recordId: call.recordId });
        throw new FingerprintMismatchError();
      }
      return replay<T>(call.recordId, cached.outcome, cached.attempt, true);
    }
    const shared = inflight.get(call.recordId);
    if (shared) return joinInflight(shared, call);

    let leaveClaiming!: () => void;
    const entry: Inflight = {
      fingerprint: call.fingerprint,
      state: 'claiming',
      claimed: new Promise<void>((resolve) => (leaveClaiming = resolve)),
      leaseEnd: 0,
      released: false,
      result: undefined as never,
    };
    const setState = (state: Inflight['state'], leaseEnd = entry.leaseEnd) => {
      entry.state = state;
      entry.leaseEnd = leaseEnd;
      leaveClaiming();
    };
    entry.result = (async () => {
      try {
        return await claimAndRun(call, entry, setState);
      } finally {
        setState('done');
        inflight.delete(call.recordId);
      }
    })();
    inflight.set(call.recordId, entry);
    return entry.result as Promise<ExecuteResult<T>>;
  }

  /**
   * A second call for a record this process is already working on: no store call. It keeps
   * its own policy and deadline; when the first call's outcome is not stored (released) or
   * ends in-progress while this one may still wait, it claims for itself.
   */
  async function joinInflight<T>(shared: Inflight, call: Call<T>): Promise<ExecuteResult<T>> {
    const { recordId } = call;
    if (!sameFingerprint(shared.fingerprint, call.fingerprint)) {
      emit?.({ type: 'mismatch', recordId });
      throw new FingerprintMismatchError();
    }
    const deadline = Date.now() + call.waitMs;
    const again = () =>
      execute(call.key, call.action, { ...call.opts, waitTimeout: Math.max(0, deadline - Date.now()) });
    if (call.policy === 'reject') {
      await shared.claimed;
      if (shared.state === 'holder' || shared.state === 'waiting') {
        emit?.({ type: 'in_progress', recordId });
        throw new InProgressError(shared.leaseEnd - Date.now());
      }
    }
    let r: ExecuteResult<unknown>;
    try {
      r = await withDeadline(shared.result, deadline - Date.now(), () => {
        emit?.({ type: 'in_progress', recordId });
        return new InProgressError(shared.leaseEnd - Date.now(), 'gave up waiting for the holder');
      });
    } catch (error) {
      const mayStillWait =
        call.policy === 'wait' && error instanceof InProgressError && deadline > Date.now();
      if (shared.released || (mayStillWait && inflight.get(recordId) !== shared)) return again();
      throw error;
    }
    if (shared.released) return again(); // a releaseIf value is not ours to share
    emit?.({ type: 'replayed', recordId, attempt: r.attempt, shared: true });
    return { ...(r as ExecuteResult<T>), replayed: true };
  }

  async function claimAndRun<T>(
    call: Call<T>,
    entry: Inflight,
    setState: (state: Inflight['state'], leaseEnd?: number) => void,
  ): Promise<ExecuteResult<T>> {
    const { recordId, fingerprint, leaseMs, ttlMs } = call;
    const turn = await waitForTurn({
      store,
      recordId,
      waitMs: call.policy === 'wait' ? call.waitMs : 0,
      claim: async () => {
        const token = randomUUID();
        const sentAt = Date.now();
        try {
          const result = await storeCall(recordId, () =>
            store.claim({ id: recordId, fingerprint, leaseMs, ttlMs, token }),
          );
          return { result, token, sentAt };
        } catch (error) {
          // the claim was sent and may still land: undo it once the store answers again
          if (error instanceof StoreUnavailableError) lateClaims.undo(recordId, token);
          throw error;
        }
      },
      accept: (record) => {
        if (!sameFingerprint(record.fingerprint, fingerprint)) {
          emit?.({ type: 'mismatch', recordId });
          throw new FingerprintMismatchError();
        }
        return record.state === 'completed';
      },
      onWait: (leaseLeft) => {
        setState('waiting', Date.now() + leaseLeft);
        emit?.({ type: 'wait', recordId });
      },
      // every re-claim sees the holder's renewed lease: later joiners get a current retryAfterMs
      onLease: (leaseLeft) => (entry.leaseEnd = Date.now() + leaseLeft),
    });
    if (turn.kind === 'busy') {
      emit?.({ type: 'in_progress', recordId });
      throw new InProgressError(
        turn.retryAfterMs,
        turn.timedOut ? 'gave up waiting for the holder' : undefined,
      );
    }
    if (turn.kind === 'completed') {
      const { record } = turn;
      const outcome = record.outcome ?? '';
      cache?.set(record.id, { fingerprint, outcome, attempt: record.attempt }, record.expiresAt, turn.now);
      return replay<T>(record.id, outcome, record.attempt, false);
    }

    setState('holder', turn.sentAt + leaseMs);
    emit?.({ type: turn.takeover ? 'takeover' : 'acquired', recordId, attempt: turn.attempt });
    const value = await hold({
      key: call.key,
      recordId,
      token: turn.token,
      attempt: turn.attempt,
      takeover: turn.takeover,
      leaseMs,
      ttlMs,
      claimSentAt: turn.sentAt,
      action: call.action,
      releaseIf: call.opts.releaseIf,
      definitive: call.opts.definitive,
      onRelease: () => (entry.released = true),
      onRenew: (leaseEnd) => (entry.leaseEnd = leaseEnd),
    });
    return { value, replayed: false, attempt: turn.attempt, recordId };
  }

  function replay<T>(recordId: string, stored: string, attempt: number, cached: boolean): ExecuteResult<T> {
    const outcome = decodeOutcome(stored);
    emit?.({ type: 'replayed', recordId, attempt, shared: false, ...(cached && { cached }) });
    if (outcome.kind === 'error') throw reviveError(outcome.error);
    if (outcome.kind === 'too_large') throw new OutcomeTooLargeError(outcome.bytes, outcome.limit);
    return { value: outcome.value as T, replayed: true, attempt, recordId };
  }

  function storeCall<R>(recordId: string, fn: () => Promise<R>): Promise<R> {
    let pending: Promise<R>;
    try {
      pending = fn();
    } catch (error) {
      pending = Promise.reject(error); // a store that throws instead of rejecting
    }
    return pending.catch((error: unknown) => {
      emit?.({ type: 'store_error', recordId, error });
      if (isIdemError(error)) throw error;
      throw new StoreUnavailableError(`${store.name} store failed: ${(error as Error)?.message}`, {
        cause: error,
      });
    });
  }

  return {
    store,
    execute,
    async run(key, action, opts) {
      return (await execute(key, action, opts)).value;
    },
    key(namespace, ...parts) {
      return deriveKey(namespace, parts);
    },
    ids(key, scope) {
      const recordId = idOf(validateKey(key), scope);
      return { recordId, downstreamKey: downstreamKeyOf(recordId) };
    },
    async purgeExpired({ batchSize = 1000, maxBatches = Number.POSITIVE_INFINITY } = {}) {
      let total = 0;
      for (let i = 0; i < maxBatches; i++) {
        const n = await storeCall('*', () => store.purgeExpired(batchSize));
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

/** Scope parts as strings; anything else is an InvalidOptionError. */
export function scopeParts(scope: string | readonly string[] | undefined): string[] {
  if (scope === undefined) return [];
  const parts = typeof scope === 'string' ? [scope] : [...scope];
  for (const p of parts)
    if (typeof p !== 'string') throw new InvalidOptionError('scope parts must be strings');
  return parts;
}
